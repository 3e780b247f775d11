//! GB/T 26875.3-2011 (城市消防远程监控系统 第3部分：报警传输网络通信协议):
//! the gateway acting as the sites' 用户信息传输装置 towards the city's
//! monitoring centre.
//!
//! [`frame`] and [`unit`] are the pure codec (frames, the streaming
//! deframer, every data unit the gateway sends or answers); [`describe`]
//! puts a frame into words for installers; [`map`] turns alarms and
//! readings into data units (pure). The shell: [`outbox`] (persisted, in
//! order), [`link`] (the TCP client per centre and site), [`service`] (the
//! feeder following committed events and the store), [`duty`] (链路故障
//! and 查岗 on the duty desk), [`metrics`].

pub mod api;
pub use crate::config::northbound as config;
pub mod describe;
pub mod duty;
pub mod frame;
pub mod link;
pub mod map;
pub use crate::metrics::gb26875 as metrics;
pub mod outbox;
pub mod service;
pub mod unit;

pub use frame::{Command, Deframer, Frame, FrameError, TimeLabel};
pub use unit::DataUnit;

#[cfg(test)]
mod tests;
