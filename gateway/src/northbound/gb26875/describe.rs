//! Frames in words, for installers reading a packet capture
//! (`gateway gb26875 decode HEX`). Type and bit names in 简体中文 as the
//! standard names them.

use super::frame::{Frame, FrameError};
use super::unit::{
    bit_names, decode_description, kind_label, DataUnit, COMPONENT_BIT_NAMES, DEVICE_BIT_NAMES,
    OPERATION_BIT_NAMES,
};
use std::fmt::{self, Write as _};

pub use crate::domain::text::parse_hex;

fn addr(a: &[u8; 6]) -> String {
    a.iter()
        .rev()
        .map(|b| format!("{b:02X}"))
        .collect::<String>()
}

/// One frame in words.
pub fn frame(f: &Frame) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "业务流水号 serial   {}", f.serial);
    let _ = writeln!(out, "协议版本号 version  {}.{}", f.version[0], f.version[1]);
    let _ = writeln!(out, "时间标签 time       {}", f.time);
    let _ = writeln!(
        out,
        "源地址 source       {} (bytes {:02X?})",
        addr(&f.source),
        f.source
    );
    let _ = writeln!(
        out,
        "目的地址 destination {} (bytes {:02X?})",
        addr(&f.destination),
        f.destination
    );
    let _ = writeln!(
        out,
        "命令 command        {} {}",
        f.command.code(),
        f.command.label()
    );
    let _ = writeln!(out, "数据长度 data       {} bytes", f.data.len());
    if f.data.is_empty() {
        let _ = writeln!(out, "应用数据单元        (空)");
    } else {
        match DataUnit::decode(&f.data) {
            Ok(u) => {
                let _ = write!(out, "{u}");
            }
            Err(e) => {
                let _ = writeln!(out, "应用数据单元 not understood: {e}");
            }
        }
    }
    out
}

/// Every frame in `bytes`, and every refusal, in words.
pub fn stream(bytes: &[u8]) -> String {
    let mut d = super::frame::Deframer::new();
    let mut out = String::new();
    let mut rest = bytes;
    let mut n = 0;
    loop {
        let took = d.push(rest);
        rest = &rest[took..];
        while let Some(r) = d.next_frame() {
            n += 1;
            match r {
                Ok(f) => {
                    let _ = writeln!(out, "— frame {n} —\n{}", frame(&f));
                }
                Err(e) => {
                    let _ = writeln!(out, "— frame {n}: refused: {e} —\n{}", refusal(&e));
                }
            }
        }
        if rest.is_empty() {
            break;
        }
    }
    if d.buffered() > 0 {
        let _ = writeln!(
            out,
            "({} bytes of an incomplete frame at the end)",
            d.buffered()
        );
    }
    if d.skipped > 0 {
        let _ = writeln!(out, "({} bytes skipped outside frames)", d.skipped);
    }
    if n == 0 && d.buffered() == 0 {
        let _ = writeln!(out, "no frame found");
    }
    out
}

fn refusal(e: &FrameError) -> &'static str {
    match e {
        FrameError::BadChecksum { .. } => "校验和错误，应答否认(6)",
        FrameError::OverLength { .. } => "数据单元超长，应答否认(6)",
        FrameError::UnknownCommand { .. } => "未知命令，应答否认(6)",
        FrameError::BadEnd { .. } => "结束符错误",
        _ => "不是报文",
    }
}

/// A data unit in words (the `Display` of [`DataUnit`]).
pub fn unit(u: &DataUnit, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(
        f,
        "类型标志 type       {} {}",
        u.kind(),
        kind_label(u.kind())
    )?;
    match u {
        DataUnit::SystemState(v) => {
            for (i, t) in v.iter().enumerate() {
                let o = &t.object;
                writeln!(
                    f,
                    "  [{i}] 系统类型 {} 系统地址 {} 状态 0x{:04X} {:?} @ {}",
                    o.system_type,
                    o.system_address,
                    o.state,
                    bit_names(u32::from(o.state), &COMPONENT_BIT_NAMES),
                    t.time
                )?;
            }
        }
        DataUnit::ComponentState(v) => {
            for (i, t) in v.iter().enumerate() {
                let o = &t.object;
                writeln!(
                    f,
                    "  [{i}] 系统类型 {} 系统地址 {} 部件类型 {} 部件地址 {} 状态 0x{:04X} {:?} 说明 「{}」 @ {}",
                    o.system_type,
                    o.system_address,
                    o.component_type,
                    o.component_address,
                    o.state,
                    bit_names(u32::from(o.state), &COMPONENT_BIT_NAMES),
                    decode_description(&o.description),
                    t.time
                )?;
            }
        }
        DataUnit::ComponentAnalog(v) => {
            for (i, t) in v.iter().enumerate() {
                let o = &t.object;
                writeln!(
                    f,
                    "  [{i}] 系统类型 {} 系统地址 {} 部件类型 {} 部件地址 {} 模拟量类型 {} 值 {} @ {}",
                    o.system_type,
                    o.system_address,
                    o.component_type,
                    o.component_address,
                    o.analog_type,
                    o.value,
                    t.time
                )?;
            }
        }
        DataUnit::Operation(v) => {
            for (i, t) in v.iter().enumerate() {
                let o = &t.object;
                writeln!(
                    f,
                    "  [{i}] 系统类型 {} 系统地址 {} 操作 0x{:02X} 操作员 {} @ {}",
                    o.system_type, o.system_address, o.operation, o.operator, t.time
                )?;
            }
        }
        DataUnit::DeviceState(v) => {
            for (i, t) in v.iter().enumerate() {
                writeln!(
                    f,
                    "  [{i}] 状态 0x{:02X} {:?} @ {}",
                    t.object,
                    bit_names(u32::from(t.object), &DEVICE_BIT_NAMES),
                    t.time
                )?;
            }
        }
        DataUnit::DeviceOperation(v) => {
            for (i, t) in v.iter().enumerate() {
                writeln!(
                    f,
                    "  [{i}] 操作 0x{:02X} {:?} 操作员 {} @ {}",
                    t.object.operation,
                    bit_names(u32::from(t.object.operation), &OPERATION_BIT_NAMES),
                    t.object.operator,
                    t.time
                )?;
            }
        }
        DataUnit::DeviceTime(v) | DataUnit::TimeSync(v) => {
            for (i, t) in v.iter().enumerate() {
                writeln!(f, "  [{i}] 时间 {t}")?;
            }
        }
        DataUnit::Read { objects, .. } => {
            for (i, o) in objects.iter().enumerate() {
                writeln!(f, "  [{i}] 对象 {o:02X?}")?;
            }
        }
        DataUnit::Initialise(v) => {
            for (i, o) in v.iter().enumerate() {
                writeln!(f, "  [{i}] 预留 {o}")?;
            }
        }
        DataUnit::DutyCheck(v) => {
            for (i, o) in v.iter().enumerate() {
                writeln!(f, "  [{i}] 查岗应答时限 {o} 分钟")?;
            }
        }
    }
    Ok(())
}
