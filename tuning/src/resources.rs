//! The memory and I/O knobs of a broker: their defaults (sized from the machine's memory) and
//! the I/O properties file `riptide tune` writes and `riptide start` reads.
//!
//! Every knob, with its key in the properties file:
//!
//! | key | what | default |
//! |---|---|---|
//! | `storage.write.bytes` | largest single O_DIRECT write of a segment (a commit is cut into pieces of this size, submitted together) | 2 MiB |
//! | `io.memory.bytes` | glommio's I/O memory per shard (DMA buffers, registered with io_uring when the memlock limit allows) | 10 MiB (glommio's) |
//! | `io.ring.depth` | glommio's io_uring submission depth per shard | 128 (glommio's) |
//! | `cache.bytes.per.shard` | batch cache of one shard, shared by its logs (each log at most 8 MiB) | 1/8 of memory / shards, 16 MiB .. 1 GiB |
//! | `request.budget.bytes.per.shard` | request bytes one shard's connections may hold (Kafka's `queued.max.request.bytes`) | 1/8 of memory / shards, at most 512 MiB, at least `socket.request.max.bytes` |

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default `storage.write.bytes` (storage's `WRITE_CHUNK_BYTES_MAX`).
pub const WRITE_BYTES_DEFAULT: usize = 2 << 20;
/// glommio's own defaults (`DEFAULT_IO_MEMORY`, `DEFAULT_RING_SUBMISSION_DEPTH`).
pub const IO_MEMORY_BYTES_DEFAULT: usize = 10 << 20;
pub const RING_DEPTH_DEFAULT: usize = 128;
/// Share of the memory each budget may use at most, over all shards (1/8 each).
pub const CACHE_MEMORY_DIVISOR: u64 = 8;
pub const REQUEST_BUDGET_MEMORY_DIVISOR: u64 = 8;
/// Bounds of the memory-sized defaults.
pub const CACHE_BYTES_PER_SHARD_MIN: u64 = 16 << 20;
pub const CACHE_BYTES_PER_SHARD_MAX: u64 = 1 << 30;
pub const REQUEST_BUDGET_BYTES_PER_SHARD_MAX: u64 = 512 << 20;
/// Memory assumed when it cannot be read.
pub const MEMORY_BYTES_FALLBACK: u64 = 4 << 30;
/// Valid ranges of the file's values.
pub const WRITE_BYTES_RANGE: (usize, usize) = (4096, 64 << 20);
pub const IO_MEMORY_BYTES_RANGE: (usize, usize) = (64 << 10, 4 << 30);
pub const RING_DEPTH_RANGE: (usize, usize) = (8, 32768);
pub const CACHE_BYTES_RANGE: (u64, u64) = (0, 1 << 40);
pub const REQUEST_BUDGET_BYTES_RANGE: (u64, u64) = (1 << 20, 1 << 40);
/// File name `riptide start` looks for in the data dir when no file is named.
pub const IO_PROPERTIES_FILE: &str = "io-properties.toml";

/// The knobs as the broker applies them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resources {
    pub write_bytes: usize,
    pub io_memory_bytes: usize,
    pub ring_depth: usize,
    pub cache_bytes: usize,
    pub request_budget_bytes: u64,
    /// Where the values come from, for the start-up log line.
    pub source: String,
}

impl Resources {
    /// Defaults for a machine with `memory_bytes` and `shards` shards; the request budget is at
    /// least `request_max_bytes` (the largest request must fit).
    pub fn from_memory(memory_bytes: Option<u64>, shards: usize, request_max_bytes: u64) -> Resources {
        let memory = memory_bytes.unwrap_or(MEMORY_BYTES_FALLBACK);
        let shards = shards.max(1) as u64;
        let cache = (memory / CACHE_MEMORY_DIVISOR / shards).clamp(CACHE_BYTES_PER_SHARD_MIN, CACHE_BYTES_PER_SHARD_MAX);
        let budget = (memory / REQUEST_BUDGET_MEMORY_DIVISOR / shards).min(REQUEST_BUDGET_BYTES_PER_SHARD_MAX).max(request_max_bytes);
        Resources {
            write_bytes: WRITE_BYTES_DEFAULT,
            io_memory_bytes: IO_MEMORY_BYTES_DEFAULT,
            ring_depth: RING_DEPTH_DEFAULT,
            cache_bytes: cache as usize,
            request_budget_bytes: budget,
            source: match memory_bytes {
                Some(m) => format!("defaults for {} MiB of memory and {shards} shards", m >> 20),
                None => format!("defaults (memory unknown, {} MiB assumed) for {shards} shards", MEMORY_BYTES_FALLBACK >> 20),
            },
        }
    }

    /// The file's settings over these (every key present in the file wins).
    pub fn with(mut self, props: &IoProperties, path: &Path) -> Resources {
        let s = &props.settings;
        if let Some(v) = s.write_bytes {
            self.write_bytes = v;
        }
        if let Some(v) = s.io_memory_bytes {
            self.io_memory_bytes = v;
        }
        if let Some(v) = s.ring_depth {
            self.ring_depth = v;
        }
        if let Some(v) = s.cache_bytes_per_shard {
            self.cache_bytes = v as usize;
        }
        if let Some(v) = s.request_budget_bytes_per_shard {
            self.request_budget_bytes = v;
        }
        self.source = format!("{} over {}", path.display(), self.source);
        self
    }
}

/// The settings of an I/O properties file. Every key is optional: a missing one keeps its
/// default. Unknown keys are refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(rename = "storage.write.bytes", skip_serializing_if = "Option::is_none")]
    pub write_bytes: Option<usize>,
    #[serde(rename = "io.memory.bytes", skip_serializing_if = "Option::is_none")]
    pub io_memory_bytes: Option<usize>,
    #[serde(rename = "io.ring.depth", skip_serializing_if = "Option::is_none")]
    pub ring_depth: Option<usize>,
    #[serde(rename = "cache.bytes.per.shard", skip_serializing_if = "Option::is_none")]
    pub cache_bytes_per_shard: Option<u64>,
    #[serde(rename = "request.budget.bytes.per.shard", skip_serializing_if = "Option::is_none")]
    pub request_budget_bytes_per_shard: Option<u64>,
}

/// An I/O properties file: `[settings]` (applied) and `[measured]` (what `tune` saw; kept for
/// people, not read by `start`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoProperties {
    #[serde(default)]
    pub settings: Settings,
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub measured: toml::Table,
}

/// Why a properties file was refused; the message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum PropertiesError {
    #[error("cannot read I/O properties file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("bad I/O properties file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("bad I/O properties file {path}: {key} must be {expected}, got {value}")]
    Invalid { path: PathBuf, key: &'static str, expected: String, value: String },
}

impl IoProperties {
    pub fn load(path: &Path) -> Result<IoProperties, PropertiesError> {
        let text = std::fs::read_to_string(path).map_err(|source| PropertiesError::Read { path: path.into(), source })?;
        IoProperties::parse(&text, path)
    }

    /// Parses and validates; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<IoProperties, PropertiesError> {
        let props: IoProperties = toml::from_str(text)
            .map_err(|e| PropertiesError::Parse { path: path.into(), message: e.to_string().trim_end().replace('\n', " ") })?;
        props.validate(path)?;
        Ok(props)
    }

    fn validate(&self, path: &Path) -> Result<(), PropertiesError> {
        let s = &self.settings;
        let bad = |key: &'static str, expected: String, value: String| PropertiesError::Invalid { path: path.into(), key, expected, value };
        let range = |key: &'static str, v: u64, (lo, hi): (u64, u64)| {
            if (lo..=hi).contains(&v) { Ok(()) } else { Err(bad(key, format!("between {lo} and {hi}"), v.to_string())) }
        };
        if let Some(v) = s.write_bytes {
            range("storage.write.bytes", v as u64, (WRITE_BYTES_RANGE.0 as u64, WRITE_BYTES_RANGE.1 as u64))?;
            if v % 4096 != 0 {
                return Err(bad("storage.write.bytes", "a multiple of 4096".into(), v.to_string()));
            }
        }
        if let Some(v) = s.io_memory_bytes {
            range("io.memory.bytes", v as u64, (IO_MEMORY_BYTES_RANGE.0 as u64, IO_MEMORY_BYTES_RANGE.1 as u64))?;
        }
        if let Some(v) = s.ring_depth {
            range("io.ring.depth", v as u64, (RING_DEPTH_RANGE.0 as u64, RING_DEPTH_RANGE.1 as u64))?;
            if !v.is_power_of_two() {
                return Err(bad("io.ring.depth", "a power of two".into(), v.to_string()));
            }
        }
        if let Some(v) = s.cache_bytes_per_shard {
            range("cache.bytes.per.shard", v, CACHE_BYTES_RANGE)?;
        }
        if let Some(v) = s.request_budget_bytes_per_shard {
            range("request.budget.bytes.per.shard", v, REQUEST_BUDGET_BYTES_RANGE)?;
        }
        Ok(())
    }

    /// The file as `tune` writes it: a header, what each key means, then the TOML.
    pub fn render(&self, header: &str) -> String {
        let mut out = String::new();
        for line in header.lines() {
            out.push_str(&format!("# {line}\n"));
        }
        out.push_str(concat!(
            "#\n",
            "# [settings] (read by `riptide start`; a missing key keeps its default):\n",
            "#   storage.write.bytes             largest single O_DIRECT write of a segment (multiple of 4096)\n",
            "#   io.memory.bytes                 glommio I/O memory (DMA buffers) per shard\n",
            "#   io.ring.depth                   glommio io_uring submission depth per shard (power of two)\n",
            "#   cache.bytes.per.shard           batch cache of one shard (each log at most 8 MiB of it)\n",
            "#   request.budget.bytes.per.shard  request bytes one shard holds at once (>= socket.request.max.bytes)\n",
            "# [measured] is what `riptide tune` saw; `riptide start` does not read it.\n\n",
        ));
        out.push_str(&toml::to_string(self).expect("properties serialize"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_from_memory_scale_and_clamp() {
        let gib = 1u64 << 30;
        let r = Resources::from_memory(Some(24 * gib), 2, 100 << 20);
        assert_eq!(r.cache_bytes as u64, CACHE_BYTES_PER_SHARD_MAX, "24 GiB / 8 / 2 = 1.5 GiB, capped");
        assert_eq!(r.request_budget_bytes, 512 << 20);
        let small = Resources::from_memory(Some(gib), 4, 100 << 20);
        assert_eq!(small.cache_bytes as u64, 32 << 20, "1 GiB / 8 / 4");
        assert_eq!(small.request_budget_bytes, 100 << 20, "never below the largest request");
        let tiny = Resources::from_memory(Some(256 << 20), 8, 1 << 20);
        assert_eq!(tiny.cache_bytes as u64, CACHE_BYTES_PER_SHARD_MIN);
        assert_eq!(tiny.request_budget_bytes, 4 << 20);
        assert_eq!((r.write_bytes, r.io_memory_bytes, r.ring_depth), (2 << 20, 10 << 20, 128));
    }

    #[test]
    fn properties_round_trip_and_apply() {
        let props = IoProperties {
            settings: Settings {
                write_bytes: Some(1 << 20),
                io_memory_bytes: Some(32 << 20),
                ring_depth: Some(256),
                cache_bytes_per_shard: Some(64 << 20),
                request_budget_bytes_per_shard: Some(256 << 20),
            },
            measured: toml::toml! { write_mb_per_s = 512.5 },
        };
        let text = props.render("written by a test");
        let path = Path::new("io.toml");
        let back = IoProperties::parse(&text, path).unwrap();
        assert_eq!(back, props, "{text}");
        let r = Resources::from_memory(Some(8 << 30), 2, 100 << 20).with(&back, path);
        assert_eq!((r.write_bytes, r.io_memory_bytes, r.ring_depth, r.cache_bytes), (1 << 20, 32 << 20, 256, 64 << 20));
        assert_eq!(r.request_budget_bytes, 256 << 20);
        assert!(r.source.starts_with("io.toml over defaults"), "{}", r.source);
        // A partial file keeps the other defaults.
        let partial = IoProperties::parse("[settings]\n\"io.ring.depth\" = 512\n", path).unwrap();
        let r = Resources::from_memory(Some(8 << 30), 2, 100 << 20).with(&partial, path);
        assert_eq!((r.ring_depth, r.write_bytes), (512, WRITE_BYTES_DEFAULT));
    }

    #[test]
    fn properties_errors_name_the_key() {
        let path = Path::new("/etc/riptide/io.toml");
        let err = |text: &str| IoProperties::parse(text, path).unwrap_err().to_string();
        let e = err("[settings]\n\"io.ring.deep\" = 64\n");
        assert!(e.contains("io.ring.deep") && e.contains("/etc/riptide/io.toml"), "{e}");
        let e = err("[settings]\n\"io.ring.depth\" = 100\n");
        assert!(e.contains("io.ring.depth") && e.contains("power of two"), "{e}");
        let e = err("[settings]\n\"storage.write.bytes\" = 5000\n");
        assert!(e.contains("storage.write.bytes") && e.contains("4096"), "{e}");
        let e = err("[settings]\n\"cache.bytes.per.shard\" = \"lots\"\n");
        assert!(e.contains("cache.bytes.per.shard"), "{e}");
        let e = err("[settings]\n\"request.budget.bytes.per.shard\" = 10\n");
        assert!(e.contains("request.budget.bytes.per.shard"), "{e}");
        let e = err("[setings]\n");
        assert!(e.contains("setings"), "{e}");
    }
}
