//! The application data unit (应用数据单元): a type byte (类型标志), an
//! object count, and the objects; upstream objects each carry a 6-byte
//! time label. Pure encode and decode of every type the gateway sends or
//! answers.
//!
//! Object layouts (bytes, little-endian):
//!
//! | type | object | bytes |
//! |---|---|---|
//! | 1 系统状态 | system type, system address, state u16 | 4 + 6 time |
//! | 2 部件运行状态 | system type, system address, component type, component address u32, state u16, description 31 (GB 18030) | 40 + 6 |
//! | 3 部件模拟量值 | system type, system address, component type, component address u32, analog type, value i16 | 10 + 6 |
//! | 4 操作信息 | system type, system address, operation bits, operator | 4 + 6 |
//! | 21 用户信息传输装置运行状态 | state bits | 1 + 6 |
//! | 24 用户信息传输装置操作信息 | operation bits, operator | 2 + 6 |
//! | 28 用户信息传输装置系统时间 | time | 6 |
//! | 61, 65, 66, 68 读… | system type, system address | 2 |
//! | 62, 63, 67 读… | system type, system address, component address u32 | 6 |
//! | 64 读操作信息记录 | system type, system address, count, start time | 9 |
//! | 84 读装置操作信息记录 | count, start time | 7 |
//! | 81–83, 85–88 读装置… | reserved | 1 |
//! | 89 初始化 | reserved | 1 |
//! | 90 同步时钟 | time | 6 |
//! | 91 查岗 | answer window, minutes | 1 |

use super::frame::{EncodeError, TimeLabel};
use std::fmt;

/// Length of a component description.
pub const DESCRIPTION_LEN: usize = 31;

/// 类型标志 values.
pub mod kind {
    pub const SYSTEM_STATE: u8 = 1;
    pub const COMPONENT_STATE: u8 = 2;
    pub const COMPONENT_ANALOG: u8 = 3;
    pub const OPERATION: u8 = 4;
    pub const DEVICE_STATE: u8 = 21;
    pub const DEVICE_OPERATION: u8 = 24;
    pub const DEVICE_TIME: u8 = 28;
    pub const INITIALISE: u8 = 89;
    pub const TIME_SYNC: u8 = 90;
    pub const DUTY_CHECK: u8 = 91;
}

/// Component state bits (部件状态, 2 bytes).
pub mod component_bits {
    /// 1 = normal operation, 0 = test.
    pub const NORMAL: u16 = 1 << 0;
    pub const FIRE: u16 = 1 << 1;
    pub const FAULT: u16 = 1 << 2;
    pub const SHIELDED: u16 = 1 << 3;
    pub const SUPERVISORY: u16 = 1 << 4;
    pub const STARTED: u16 = 1 << 5;
    pub const FEEDBACK: u16 = 1 << 6;
    pub const DELAY: u16 = 1 << 7;
    pub const MAIN_POWER_FAULT: u16 = 1 << 8;
}

/// Transmission-device state bits (type 21).
pub mod device_bits {
    pub const NORMAL: u8 = 1 << 0;
    pub const FIRE: u8 = 1 << 1;
    pub const FAULT: u8 = 1 << 2;
    pub const MAIN_POWER_FAULT: u8 = 1 << 3;
    pub const BACKUP_POWER_FAULT: u8 = 1 << 4;
    pub const LINK_FAULT: u8 = 1 << 5;
    pub const LINE_FAULT: u8 = 1 << 6;
}

/// Device operation bits (type 24).
pub mod operation_bits {
    pub const RESET: u8 = 1 << 0;
    pub const MUTE: u8 = 1 << 1;
    pub const MANUAL_ALARM: u8 = 1 << 2;
    pub const ALARM_CANCELLED: u8 = 1 << 3;
    pub const SELF_TEST: u8 = 1 << 4;
    pub const DUTY_CHECK_ANSWERED: u8 = 1 << 5;
    pub const TEST: u8 = 1 << 6;
}

/// 部件类型 values this gateway sends.
pub mod component_type {
    pub const ELECTRICAL_FIRE_PANEL: u8 = 16;
    pub const RESIDUAL_CURRENT_DETECTOR: u8 = 17;
    pub const TEMPERATURE_DETECTOR: u8 = 18;
    pub const PRESSURE_SWITCH: u8 = 99;
}

/// 模拟量类型 values this gateway sends.
pub mod analog_type {
    /// 0.1 °C.
    pub const TEMPERATURE: u8 = 3;
    /// kPa.
    pub const PRESSURE: u8 = 5;
    /// User-defined (128–254): residual current in mA.
    pub const RESIDUAL_CURRENT_MA: u8 = 128;
}

/// 系统类型 1, 火灾报警系统 (the configured default).
pub use crate::config::northbound::SYSTEM_FIRE_ALARM;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemState {
    pub system_type: u8,
    pub system_address: u8,
    pub state: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentState {
    pub system_type: u8,
    pub system_address: u8,
    pub component_type: u8,
    pub component_address: u32,
    pub state: u16,
    /// GB 18030, NUL-padded; see [`encode_description`].
    pub description: [u8; DESCRIPTION_LEN],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentAnalog {
    pub system_type: u8,
    pub system_address: u8,
    pub component_type: u8,
    pub component_address: u32,
    pub analog_type: u8,
    pub value: i16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub system_type: u8,
    pub system_address: u8,
    pub operation: u8,
    pub operator: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceOperation {
    pub operation: u8,
    pub operator: u8,
}

/// An upstream object with its time label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timed<T> {
    pub object: T,
    pub time: TimeLabel,
}

/// One application data unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataUnit {
    SystemState(Vec<Timed<SystemState>>),
    ComponentState(Vec<Timed<ComponentState>>),
    ComponentAnalog(Vec<Timed<ComponentAnalog>>),
    Operation(Vec<Timed<Operation>>),
    /// Type 21: the state bits.
    DeviceState(Vec<Timed<u8>>),
    DeviceOperation(Vec<Timed<DeviceOperation>>),
    /// Type 28.
    DeviceTime(Vec<TimeLabel>),
    /// 61–68, 81–88: the objects as sent, each of the type's fixed length
    /// (see [`read_object_len`]).
    Read {
        kind: u8,
        objects: Vec<Vec<u8>>,
    },
    /// 89: reserved byte per object.
    Initialise(Vec<u8>),
    /// 90.
    TimeSync(Vec<TimeLabel>),
    /// 91: answer window in minutes per object.
    DutyCheck(Vec<u8>),
}

/// Why a data unit was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty data unit")]
    Empty,
    #[error("unknown data unit type {0}")]
    UnknownType(u8),
    #[error("type {kind}: {count} objects need {need} bytes, the unit has {have}")]
    Length {
        kind: u8,
        count: u8,
        need: usize,
        have: usize,
    },
}

/// Object length of a read type (61–68, 81–88), `None` for others.
pub fn read_object_len(kind: u8) -> Option<usize> {
    Some(match kind {
        61 | 65 | 66 | 68 => 2,
        62 | 63 | 67 => 6,
        64 => 9,
        84 => 7,
        81..=83 | 85..=88 => 1,
        _ => return None,
    })
}

/// Object length of a type, time label included.
fn object_len(kind: u8) -> Option<usize> {
    Some(match kind {
        1 => 4 + 6,
        2 => 40 + 6,
        3 => 10 + 6,
        4 => 4 + 6,
        21 => 1 + 6,
        24 => 2 + 6,
        28 | 90 => 6,
        89 | 91 => 1,
        k => read_object_len(k)?,
    })
}

/// `text` as GB 18030, cut at a character boundary to fit 31 bytes and
/// padded with NULs.
pub fn encode_description(text: &str) -> [u8; DESCRIPTION_LEN] {
    let mut out = [0u8; DESCRIPTION_LEN];
    let mut used = 0;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let (bytes, _, _) = encoding_rs::GB18030.encode(c.encode_utf8(&mut buf));
        if used + bytes.len() > DESCRIPTION_LEN {
            break;
        }
        out[used..used + bytes.len()].copy_from_slice(&bytes);
        used += bytes.len();
    }
    out
}

/// A description as text: up to the first NUL, GB 18030, malformed bytes
/// replaced.
pub fn decode_description(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let (text, _) = encoding_rs::GB18030.decode_without_bom_handling(&bytes[..end]);
    text.trim_end().to_string()
}

impl ComponentState {
    pub fn description_text(&self) -> String {
        decode_description(&self.description)
    }
}

fn time_at(b: &[u8], at: usize) -> TimeLabel {
    let mut t = [0u8; 6];
    t.copy_from_slice(&b[at..at + 6]);
    TimeLabel::from_bytes(t)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl DataUnit {
    pub fn kind(&self) -> u8 {
        match self {
            DataUnit::SystemState(_) => kind::SYSTEM_STATE,
            DataUnit::ComponentState(_) => kind::COMPONENT_STATE,
            DataUnit::ComponentAnalog(_) => kind::COMPONENT_ANALOG,
            DataUnit::Operation(_) => kind::OPERATION,
            DataUnit::DeviceState(_) => kind::DEVICE_STATE,
            DataUnit::DeviceOperation(_) => kind::DEVICE_OPERATION,
            DataUnit::DeviceTime(_) => kind::DEVICE_TIME,
            DataUnit::Read { kind, .. } => *kind,
            DataUnit::Initialise(_) => kind::INITIALISE,
            DataUnit::TimeSync(_) => kind::TIME_SYNC,
            DataUnit::DutyCheck(_) => kind::DUTY_CHECK,
        }
    }

    fn count(&self) -> usize {
        match self {
            DataUnit::SystemState(v) => v.len(),
            DataUnit::ComponentState(v) => v.len(),
            DataUnit::ComponentAnalog(v) => v.len(),
            DataUnit::Operation(v) => v.len(),
            DataUnit::DeviceState(v) => v.len(),
            DataUnit::DeviceOperation(v) => v.len(),
            DataUnit::DeviceTime(v) | DataUnit::TimeSync(v) => v.len(),
            DataUnit::Read { objects, .. } => objects.len(),
            DataUnit::Initialise(v) | DataUnit::DutyCheck(v) => v.len(),
        }
    }

    /// The unit's bytes. Refuses more than 255 objects, a read object of
    /// the wrong length, a read type outside 61–68/81–88, and a unit over
    /// 1024 bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let count = self.count();
        if count > 255 {
            return Err(EncodeError::TooManyObjects(count));
        }
        let mut out = vec![self.kind(), count as u8];
        match self {
            DataUnit::SystemState(v) => {
                for t in v {
                    let o = &t.object;
                    out.extend_from_slice(&[o.system_type, o.system_address]);
                    out.extend_from_slice(&o.state.to_le_bytes());
                    out.extend_from_slice(&t.time.to_bytes());
                }
            }
            DataUnit::ComponentState(v) => {
                for t in v {
                    let o = &t.object;
                    out.extend_from_slice(&[o.system_type, o.system_address, o.component_type]);
                    out.extend_from_slice(&o.component_address.to_le_bytes());
                    out.extend_from_slice(&o.state.to_le_bytes());
                    out.extend_from_slice(&o.description);
                    out.extend_from_slice(&t.time.to_bytes());
                }
            }
            DataUnit::ComponentAnalog(v) => {
                for t in v {
                    let o = &t.object;
                    out.extend_from_slice(&[o.system_type, o.system_address, o.component_type]);
                    out.extend_from_slice(&o.component_address.to_le_bytes());
                    out.push(o.analog_type);
                    out.extend_from_slice(&o.value.to_le_bytes());
                    out.extend_from_slice(&t.time.to_bytes());
                }
            }
            DataUnit::Operation(v) => {
                for t in v {
                    let o = &t.object;
                    out.extend_from_slice(&[
                        o.system_type,
                        o.system_address,
                        o.operation,
                        o.operator,
                    ]);
                    out.extend_from_slice(&t.time.to_bytes());
                }
            }
            DataUnit::DeviceState(v) => {
                for t in v {
                    out.push(t.object);
                    out.extend_from_slice(&t.time.to_bytes());
                }
            }
            DataUnit::DeviceOperation(v) => {
                for t in v {
                    out.extend_from_slice(&[t.object.operation, t.object.operator]);
                    out.extend_from_slice(&t.time.to_bytes());
                }
            }
            DataUnit::DeviceTime(v) | DataUnit::TimeSync(v) => {
                for t in v {
                    out.extend_from_slice(&t.to_bytes());
                }
            }
            DataUnit::Read { kind, objects } => {
                let len = read_object_len(*kind).ok_or(EncodeError::TooLong(0))?;
                for o in objects {
                    if o.len() != len {
                        return Err(EncodeError::TooLong(o.len()));
                    }
                    out.extend_from_slice(o);
                }
            }
            DataUnit::Initialise(v) | DataUnit::DutyCheck(v) => out.extend_from_slice(v),
        }
        if out.len() > super::frame::MAX_DATA {
            return Err(EncodeError::TooLong(out.len()));
        }
        Ok(out)
    }

    /// A unit from a frame's data (exact length: no bytes left over).
    pub fn decode(b: &[u8]) -> Result<DataUnit, UnitError> {
        if b.len() < 2 {
            return Err(UnitError::Empty);
        }
        let k = b[0];
        let count = b[1];
        let len = object_len(k).ok_or(UnitError::UnknownType(k))?;
        let need = 2 + len * usize::from(count);
        if b.len() != need {
            return Err(UnitError::Length {
                kind: k,
                count,
                need,
                have: b.len(),
            });
        }
        let objs = b[2..].chunks_exact(len);
        Ok(match k {
            kind::SYSTEM_STATE => DataUnit::SystemState(
                objs.map(|o| Timed {
                    object: SystemState {
                        system_type: o[0],
                        system_address: o[1],
                        state: u16::from_le_bytes([o[2], o[3]]),
                    },
                    time: time_at(o, 4),
                })
                .collect(),
            ),
            kind::COMPONENT_STATE => DataUnit::ComponentState(
                objs.map(|o| {
                    let mut description = [0u8; DESCRIPTION_LEN];
                    description.copy_from_slice(&o[9..40]);
                    Timed {
                        object: ComponentState {
                            system_type: o[0],
                            system_address: o[1],
                            component_type: o[2],
                            component_address: u32_at(o, 3),
                            state: u16::from_le_bytes([o[7], o[8]]),
                            description,
                        },
                        time: time_at(o, 40),
                    }
                })
                .collect(),
            ),
            kind::COMPONENT_ANALOG => DataUnit::ComponentAnalog(
                objs.map(|o| Timed {
                    object: ComponentAnalog {
                        system_type: o[0],
                        system_address: o[1],
                        component_type: o[2],
                        component_address: u32_at(o, 3),
                        analog_type: o[7],
                        value: i16::from_le_bytes([o[8], o[9]]),
                    },
                    time: time_at(o, 10),
                })
                .collect(),
            ),
            kind::OPERATION => DataUnit::Operation(
                objs.map(|o| Timed {
                    object: Operation {
                        system_type: o[0],
                        system_address: o[1],
                        operation: o[2],
                        operator: o[3],
                    },
                    time: time_at(o, 4),
                })
                .collect(),
            ),
            kind::DEVICE_STATE => DataUnit::DeviceState(
                objs.map(|o| Timed {
                    object: o[0],
                    time: time_at(o, 1),
                })
                .collect(),
            ),
            kind::DEVICE_OPERATION => DataUnit::DeviceOperation(
                objs.map(|o| Timed {
                    object: DeviceOperation {
                        operation: o[0],
                        operator: o[1],
                    },
                    time: time_at(o, 2),
                })
                .collect(),
            ),
            kind::DEVICE_TIME => DataUnit::DeviceTime(objs.map(|o| time_at(o, 0)).collect()),
            kind::TIME_SYNC => DataUnit::TimeSync(objs.map(|o| time_at(o, 0)).collect()),
            kind::INITIALISE => DataUnit::Initialise(objs.map(|o| o[0]).collect()),
            kind::DUTY_CHECK => DataUnit::DutyCheck(objs.map(|o| o[0]).collect()),
            _ => DataUnit::Read {
                kind: k,
                objects: objs.map(<[u8]>::to_vec).collect(),
            },
        })
    }
}

/// The installer's name of a data unit type.
pub fn kind_label(k: u8) -> &'static str {
    match k {
        1 => "建筑消防设施系统状态",
        2 => "建筑消防设施部件运行状态",
        3 => "建筑消防设施部件模拟量值",
        4 => "建筑消防设施操作信息",
        21 => "用户信息传输装置运行状态",
        24 => "用户信息传输装置操作信息",
        28 => "用户信息传输装置系统时间",
        61 => "读建筑消防设施系统状态",
        62 => "读建筑消防设施部件运行状态",
        63 => "读建筑消防设施部件模拟量值",
        64 => "读建筑消防设施操作信息记录",
        65 => "读建筑消防设施软件版本",
        66 => "读建筑消防设施系统配置情况",
        67 => "读建筑消防设施部件配置情况",
        68 => "读建筑消防设施系统时间",
        81 => "读用户信息传输装置运行状态",
        84 => "读用户信息传输装置操作信息记录",
        85 => "读用户信息传输装置软件版本",
        86 => "读用户信息传输装置配置情况",
        88 => "读用户信息传输装置系统时间",
        82 | 83 | 87 => "读用户信息传输装置（预留）",
        89 => "初始化用户信息传输装置",
        90 => "同步用户信息传输装置时钟",
        91 => "查岗命令",
        _ => "未知类型",
    }
}

/// Names of the set bits, in bit order.
pub fn bit_names(bits: u32, names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// Component state bit names, bit 0 first (bit 0 set: 正常运行).
pub const COMPONENT_BIT_NAMES: [&str; 9] = [
    "正常运行",
    "火警",
    "故障",
    "屏蔽",
    "监管",
    "启动",
    "反馈",
    "延时",
    "主电故障",
];
/// Type 21 bit names.
pub const DEVICE_BIT_NAMES: [&str; 7] = [
    "正常监视",
    "火警",
    "故障",
    "主电故障",
    "备电故障",
    "与监控中心通信信道故障",
    "监测连接线路故障",
];
/// Type 24 bit names.
pub const OPERATION_BIT_NAMES: [&str; 7] = [
    "复位",
    "消音",
    "手动报警",
    "警情消除",
    "自检",
    "查岗应答",
    "测试",
];

impl fmt::Display for DataUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::describe::unit(self, f)
    }
}
