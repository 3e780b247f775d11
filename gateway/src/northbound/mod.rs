//! Northbound links: the gateway reporting upwards to other systems as the
//! sites' transmission device. [`gb26875`]: the city's fire remote
//! monitoring centre (消防远程监控中心, GB/T 26875.3-2011).

pub mod gb26875;

/// `[northbound]`.
pub type NorthboundConfig = crate::config::northbound::NorthboundConfig;
