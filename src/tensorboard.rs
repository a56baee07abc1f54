//! A minimal TensorBoard event-file writer for scalar summaries: TFRecord framing
//! (length, masked CRC-32C, payload, masked CRC-32C) around hand-encoded `Event`
//! protobufs, readable by `tensorboard` and `tf.summary` readers.
use std::path::Path;

use crate::error::{Error, Result};
use crate::metrics::{wall_time, EpochMetrics};

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(num: u64, wire: u64, out: &mut Vec<u8>) {
    varint((num << 3) | wire, out);
}

fn bytes_field(num: u64, data: &[u8], out: &mut Vec<u8>) {
    field(num, 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

const PREFIX: &str = "events.out.tfevents.";

/// `events.out.tfevents.<created>.<host>`: the event file name of a run created at `created`.
pub fn file_name(created: u64) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "bone-age".into());
    format!("{PREFIX}{created}.{host}")
}

/// The event file of a run directory, if it has one: its name and its creation time
/// (from the name).
pub fn find(dir: &Path) -> Option<(String, f64)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    names.sort();
    let name = names.into_iter().next()?;
    let created = name[PREFIX.len()..]
        .split('.')
        .next()
        .and_then(|t| t.parse::<f64>().ok())
        .unwrap_or_else(wall_time);
    Some((name, created))
}

/// The whole event file for `history`: the version record, then one event of scalars
/// per epoch (loss/train, loss/val, lr, images_per_s, val/mae_months or val/accuracy)
/// at step = epoch. Rebuilt from the history at every checkpoint, so it always agrees
/// with `metrics.csv` (an append-only file would keep the epochs a kill threw away).
pub fn events(history: &[EpochMetrics], created: f64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut event = Vec::new();
    field(1, 1, &mut event);
    event.extend_from_slice(&created.to_le_bytes());
    bytes_field(3, b"brain.Event:2", &mut event);
    record(&event, &mut out);
    for m in history {
        let mut scalars = vec![
            ("loss/train", m.train_loss),
            ("loss/val", m.val_loss),
            ("lr", m.lr),
            ("images_per_s", m.images_per_s),
        ];
        scalars.extend(m.val_mae_months.map(|v| ("val/mae_months", v)));
        scalars.extend(m.val_accuracy.map(|v| ("val/accuracy", v)));
        let mut summary = Vec::new();
        for (tag, v) in scalars {
            let mut value = Vec::new();
            bytes_field(1, tag.as_bytes(), &mut value);
            field(2, 5, &mut value);
            value.extend_from_slice(&(v as f32).to_le_bytes());
            bytes_field(1, &value, &mut summary);
        }
        let mut event = Vec::new();
        field(1, 1, &mut event);
        event.extend_from_slice(&m.wall_time.to_le_bytes());
        field(2, 0, &mut event);
        varint(m.epoch as u64, &mut event);
        bytes_field(5, &summary, &mut event);
        record(&event, &mut out);
    }
    out
}

/// Writes [`events`] to `path`.
pub fn write(path: &Path, history: &[EpochMetrics], created: f64) -> Result<()> {
    std::fs::write(path, events(history, created)).map_err(|e| Error::io(path, e))
}

/// TFRecord framing: length, its masked CRC, the payload, its masked CRC.
fn record(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
}
