//! One JSON line per run, and the statistics the workloads report.

use std::fmt::Write;

/// A JSON value of the kinds a report holds.
enum Value {
    Num(f64),
    Int(i64),
    Bool(bool),
    Str(String),
}

/// The fields of one result line, in the order they were added.
#[derive(Default)]
pub struct Report {
    fields: Vec<(&'static str, Value)>,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    pub fn num(mut self, key: &'static str, v: f64) -> Report {
        self.fields.push((key, Value::Num(v)));
        self
    }

    pub fn int(mut self, key: &'static str, v: impl TryInto<i64>) -> Report {
        self.fields.push((key, Value::Int(v.try_into().unwrap_or(i64::MAX))));
        self
    }

    pub fn flag(mut self, key: &'static str, v: bool) -> Report {
        self.fields.push((key, Value::Bool(v)));
        self
    }

    pub fn text(mut self, key: &'static str, v: impl Into<String>) -> Report {
        self.fields.push((key, Value::Str(v.into())));
        self
    }

    /// Appends `other`'s fields after this report's.
    pub fn extend(mut self, other: Report) -> Report {
        self.fields.extend(other.fields);
        self
    }

    /// The fields as one line of JSON.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            quote(&mut out, k);
            out.push_str(": ");
            match v {
                Value::Num(x) if x.is_finite() => {
                    let _ = write!(out, "{x}");
                }
                Value::Num(_) => out.push_str("null"),
                Value::Int(x) => {
                    let _ = write!(out, "{x}");
                }
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Str(s) => quote(&mut out, s),
            }
        }
        out.push('}');
        out
    }
}

fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Latency samples in microseconds, summarised as the Python side does (nearest rank).
pub struct Latencies(Vec<f64>);

impl Latencies {
    pub fn with_capacity(n: usize) -> Latencies {
        Latencies(Vec::with_capacity(n))
    }

    pub fn push_us(&mut self, us: f64) {
        self.0.push(us);
    }

    /// mean, p50, p99 and max, as `mean_us`, `p50_us`, `p99_us`, `max_us`.
    pub fn report(mut self) -> Report {
        self.0.sort_by(f64::total_cmp);
        let n = self.0.len().max(1);
        let mean = self.0.iter().sum::<f64>() / n as f64;
        Report::new()
            .num("mean_us", mean)
            .num("p50_us", self.percentile(50.0))
            .num("p99_us", self.percentile(99.0))
            .num("max_us", self.0.last().copied().unwrap_or(f64::NAN))
    }

    /// Nearest-rank percentile of the sorted samples.
    fn percentile(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0 * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1]
    }
}
