//! Command-line subcommands kept out of `main.rs` (the binary only; the library never sees clap).
pub mod plot;
