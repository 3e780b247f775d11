//! A simulated Modbus device bank (模拟设备): serves register maps from
//! memory over tokio-modbus's server, for the demo, the tests and the
//! benchmark. Values are set in wire units and encoded through the map, so
//! what the gateway decodes is what was set; sentinels, status bits, an
//! exception on every read or silence can be switched on per unit.

use super::map::{raw_for_value, words_for_raw, Function, RegisterMap};
use std::collections::HashMap;
use std::future::{ready, Ready};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::CancellationToken;

/// How a simulated unit answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// From its registers.
    Answer,
    /// Not at all (a dead device, a cut cable).
    Silent,
    /// With this exception to every read.
    Exception(ExceptionCode),
    /// With one register or bit fewer than asked for (a confused device).
    Short,
}

struct Unit {
    map: Arc<RegisterMap>,
    words: HashMap<(Function, u16), u16>,
    behaviour: Behaviour,
}

/// The devices behind one simulated connection, by unit id.
#[derive(Clone, Default)]
pub struct Simulator {
    units: Arc<Mutex<HashMap<u8, Unit>>>,
}

impl Simulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a device: every register its map names exists and reads 0.
    pub fn add(&self, unit: u8, map: Arc<RegisterMap>) {
        let mut words = HashMap::new();
        for c in &map.channels {
            for i in 0..c.value_type.width() {
                words.insert((c.function, c.address.saturating_add(i)), 0);
            }
        }
        for s in &map.status {
            words.insert((s.function, s.address), 0);
        }
        if let Ok(mut u) = self.units.lock() {
            u.insert(
                unit,
                Unit {
                    map,
                    words,
                    behaviour: Behaviour::Answer,
                },
            );
        }
    }

    fn with(&self, unit: u8, f: impl FnOnce(&mut Unit)) {
        if let Some(u) = self
            .units
            .lock()
            .ok()
            .as_mut()
            .and_then(|m| m.get_mut(&unit))
        {
            f(u);
        }
    }

    /// Sets a channel (map id) to a value in its wire unit.
    pub fn set(&self, unit: u8, channel: &str, value: i32) {
        self.with(unit, |u| {
            if let Some(c) = u.map.channels.iter().find(|c| c.id.as_str() == channel) {
                let raw = raw_for_value(c, value);
                for (i, w) in words_for_raw(c, raw).into_iter().enumerate() {
                    u.words
                        .insert((c.function, c.address.saturating_add(i as u16)), w);
                }
            }
        });
    }

    /// Sets a channel's raw register value (a sentinel such as 0xFAFA).
    pub fn set_raw(&self, unit: u8, channel: &str, raw: u32) {
        self.with(unit, |u| {
            if let Some(c) = u.map.channels.iter().find(|c| c.id.as_str() == channel) {
                for (i, w) in words_for_raw(c, raw).into_iter().enumerate() {
                    u.words
                        .insert((c.function, c.address.saturating_add(i as u16)), w);
                }
            }
        });
    }

    /// Sets or clears one bit of a register (or a coil).
    pub fn set_bit(&self, unit: u8, function: Function, address: u16, bit: u8, on: bool) {
        self.with(unit, |u| {
            let w = u.words.entry((function, address)).or_insert(0);
            let mask = 1u16 << (bit & 15);
            *w = if on { *w | mask } else { *w & !mask };
        });
    }

    pub fn set_behaviour(&self, unit: u8, behaviour: Behaviour) {
        self.with(unit, |u| u.behaviour = behaviour);
    }

    /// The answer to one request: `Ok(None)` is no answer at all.
    pub fn answer(&self, unit: u8, req: &Request<'_>) -> Result<Option<Response>, ExceptionCode> {
        let units = self
            .units
            .lock()
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        // No such unit on the bus: nobody answers.
        let Some(u) = units.get(&unit) else {
            return Ok(None);
        };
        match u.behaviour {
            Behaviour::Silent => return Ok(None),
            Behaviour::Exception(e) => return Err(e),
            Behaviour::Answer | Behaviour::Short => {}
        }
        let short = usize::from(u.behaviour == Behaviour::Short);
        let read = |f: Function, start: u16, count: u16| -> Result<Vec<u16>, ExceptionCode> {
            (0..count.saturating_sub(short as u16))
                .map(|i| {
                    start
                        .checked_add(i)
                        .and_then(|a| u.words.get(&(f, a)).copied())
                        .ok_or(ExceptionCode::IllegalDataAddress)
                })
                .collect()
        };
        let bits = |w: Vec<u16>| w.into_iter().map(|x| x != 0).collect::<Vec<bool>>();
        Ok(Some(match *req {
            Request::ReadHoldingRegisters(a, n) => {
                Response::ReadHoldingRegisters(read(Function::Holding, a, n)?)
            }
            Request::ReadInputRegisters(a, n) => {
                Response::ReadInputRegisters(read(Function::Input, a, n)?)
            }
            Request::ReadCoils(a, n) => Response::ReadCoils(bits(read(Function::Coil, a, n)?)),
            Request::ReadDiscreteInputs(a, n) => {
                Response::ReadDiscreteInputs(bits(read(Function::Discrete, a, n)?))
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        }))
    }
}

impl Service for Simulator {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        ready(self.answer(req.slave, &req.request))
    }
}

/// Serves the simulator as a Modbus TCP server on `listener` until `stop`.
pub async fn serve_tcp(listener: TcpListener, sim: Simulator, stop: CancellationToken) {
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let on_connected = |stream, addr| {
        let sim = sim.clone();
        async move {
            tokio_modbus::server::tcp::accept_tcp_connection(stream, addr, move |_| {
                Ok(Some(sim.clone()))
            })
        }
    };
    let on_error = |e: std::io::Error| tracing::debug!(error = %e, "simulated Modbus server: connection ended");
    let _ = server
        .serve_until(
            &on_connected,
            on_error,
            async move { stop.cancelled().await },
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::modbus::map::shipped;

    #[test]
    fn answers_from_the_map_and_refuses_unknown_addresses() {
        let sim = Simulator::new();
        sim.add(3, Arc::new(shipped("aim_r100").unwrap()));
        sim.set(3, "rc1", 123);
        sim.set_raw(3, "rc2", 0xFAFA);
        assert_eq!(
            sim.answer(3, &Request::ReadHoldingRegisters(0x4A, 2)),
            Ok(Some(Response::ReadHoldingRegisters(vec![123, 0xFAFA])))
        );
        assert_eq!(
            sim.answer(3, &Request::ReadHoldingRegisters(0x40, 2)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            sim.answer(9, &Request::ReadHoldingRegisters(0x4A, 1)),
            Ok(None)
        );
        sim.set_behaviour(3, Behaviour::Silent);
        assert_eq!(
            sim.answer(3, &Request::ReadHoldingRegisters(0x4A, 1)),
            Ok(None)
        );
        sim.set_behaviour(3, Behaviour::Exception(ExceptionCode::ServerDeviceBusy));
        assert_eq!(
            sim.answer(3, &Request::ReadHoldingRegisters(0x4A, 1)),
            Err(ExceptionCode::ServerDeviceBusy)
        );
    }
}
