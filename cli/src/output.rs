//! Human tables and JSON.

use crate::error::{usage, Result};
use serde_json::Value;
use std::io::Write;

/// How a command prints its answer (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// `text` or `json`; `consume` also takes a pattern and parses `--format` itself.
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "text" | "table" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(usage(format!("--format must be text or json, not {other:?} (only consume takes a pattern)"))),
        }
    }
}

/// Columns separated by two spaces, each as wide as its widest cell; no trailing spaces.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table { rows: vec![headers.iter().map(|h| h.to_string()).collect()] }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> =
            (0..columns).map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 < row.len() {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
                } else {
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Two-column "KEY  value" lines (a summary above a table).
pub fn summary(pairs: &[(&str, String)]) -> String {
    let mut t = Table::default();
    for (k, v) in pairs {
        t.row(vec![k.to_string(), v.clone()]);
    }
    t.render()
}

/// Prints the text or the JSON form of a result; a closed stdout (e.g. `| head`) is not an error.
pub fn emit(format: Format, text: impl FnOnce() -> String, json: impl FnOnce() -> Value) {
    let out = match format {
        Format::Text => text(),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&json()).expect("JSON values serialise");
            s.push('\n');
            s
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush());
}

/// `[0, 1]` for replica and ISR lists.
pub fn id_list(ids: &[i32]) -> String {
    format!("[{}]", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let mut t = Table::new(&["NAME", "PARTITIONS", "X"]);
        t.row(vec!["orders".into(), "3".into(), String::new()]);
        t.row(vec!["a".into(), "12".into(), "y".into()]);
        assert_eq!(t.render(), "NAME    PARTITIONS  X\norders  3\na       12          y\n");
    }
}
