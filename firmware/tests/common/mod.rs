//! Test helpers: an in-memory byte stream standing in for the UART.

use std::collections::VecDeque;
use std::convert::Infallible;

/// Bytes the "broker" sent (read by the node) and bytes the node wrote.
#[derive(Default)]
pub struct Pipe {
    pub rx: VecDeque<u8>,
    pub tx: Vec<u8>,
}

impl Pipe {
    pub fn feed(&mut self, b: &[u8]) {
        self.rx.extend(b.iter().copied());
    }
    pub fn take_tx(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tx)
    }
}

impl embedded_io::ErrorType for Pipe {
    type Error = Infallible;
}

impl embedded_io::Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let mut n = 0;
        while n < buf.len() {
            match self.rx.pop_front() {
                Some(b) => {
                    buf[n] = b;
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for Pipe {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(!self.rx.is_empty())
    }
}

impl embedded_io::Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Splits bytes written by the client into packets.
pub fn packets(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (_, rem, hl) = firmware::mqtt::codec::parse_header(b)
            .expect("valid header")
            .expect("complete header");
        out.push(b[..hl + rem].to_vec());
        b = &b[hl + rem..];
    }
    out
}
