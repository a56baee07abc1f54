//! bone-age: pediatric bone age assessment from left-hand radiographs, the
//! `ml-recipe-bone-age` m46 recipe (Iglovikov et al., DLMIA 2018) in Rust on tch.
//!
//! One module per stage; this file only declares and re-exports.
pub mod config;
pub mod error;
pub mod runtime;

pub use config::Config;
pub use error::{Error, Result};
pub use runtime::{DeviceSpec, Doctor};
// Notebooks take tch from here, so one `:dep bone-age` line pins the matching version.
pub use tch;
