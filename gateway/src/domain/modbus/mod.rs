//! Modbus register maps as data: parsing the shipped and installed maps,
//! decoding and encoding registers, and planning the reads (pure).

pub mod map;
