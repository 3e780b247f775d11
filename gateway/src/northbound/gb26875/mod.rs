//! GB/T 26875.3-2011 (城市消防远程监控系统 第3部分：报警传输网络通信协议):
//! the gateway acting as the sites' 用户信息传输装置 towards the city's
//! monitoring centre.
//!
//! [`frame`] and [`unit`] are the pure codec (frames, the streaming
//! deframer, every data unit the gateway sends or answers); [`describe`]
//! puts a frame into words for installers.

pub mod describe;
pub mod frame;
pub mod unit;

pub use frame::{Command, Deframer, Frame, FrameError, TimeLabel};
pub use unit::DataUnit;

#[cfg(test)]
mod tests;
