//! Command-line subcommands kept out of `main.rs` (the binary only; the library never sees clap).
pub mod bench;
pub mod data;
pub mod download;
pub mod ensemble;
pub mod evaluate;
pub mod explain;
pub mod plot;
pub mod predict;
pub mod train;

/// `HxW` (or `H,W`), both positive, e.g. `160x128`.
pub fn parse_hw(s: &str) -> Result<[u32; 2], String> {
    let (h, w) = s
        .split_once(['x', 'X', ','])
        .ok_or_else(|| format!("{s:?}: expected HxW, e.g. 160x128"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("{s:?}: {v:?} is not a positive integer"))
    };
    Ok([p(h)?, p(w)?])
}
