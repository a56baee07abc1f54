//! A minimal TensorBoard event-file writer for scalar summaries: TFRecord framing
//! (length, masked CRC-32C, payload, masked CRC-32C) around hand-encoded `Event`
//! protobufs, readable by `tensorboard` and `tf.summary` readers.
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

pub struct EventWriter {
    file: BufWriter<File>,
    pub path: PathBuf,
}

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

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// Creates `events.out.tfevents.<time>.<host>` in `dir`, starting with the version record.
    pub fn create(dir: &Path) -> Result<Self> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "bone-age".into());
        let path = dir.join(format!("events.out.tfevents.{}.{host}", wall_time() as u64));
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = Self {
            file: BufWriter::new(file),
            path,
        };
        let mut event = Vec::new();
        field(1, 1, &mut event);
        event.extend_from_slice(&wall_time().to_le_bytes());
        bytes_field(3, b"brain.Event:2", &mut event);
        w.record(&event)?;
        Ok(w)
    }

    /// Writes scalars `(tag, value)` at `step` and flushes.
    pub fn scalars(&mut self, step: i64, values: &[(&str, f64)]) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, v) in values {
            let mut value = Vec::new();
            bytes_field(1, tag.as_bytes(), &mut value);
            field(2, 5, &mut value);
            value.extend_from_slice(&(*v as f32).to_le_bytes());
            bytes_field(1, &value, &mut summary);
        }
        let mut event = Vec::new();
        field(1, 1, &mut event);
        event.extend_from_slice(&wall_time().to_le_bytes());
        field(2, 0, &mut event);
        varint(step as u64, &mut event);
        bytes_field(5, &summary, &mut event);
        self.record(&event)?;
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut buf = Vec::with_capacity(data.len() + 16);
        buf.extend_from_slice(&len);
        buf.extend_from_slice(&masked_crc(&len).to_le_bytes());
        buf.extend_from_slice(data);
        buf.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file
            .write_all(&buf)
            .map_err(|e| Error::io(&self.path, e))
    }
}
