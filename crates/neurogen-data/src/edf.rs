//! EDF, EDF+ and BDF(+) files: reading every signal with its annotations, writing windows.
//!
//! Our own reader and writer (no EDF crate handled BDF, EDF+D gaps, negative gain and
//! sub-second starts together). The whole file is read into memory first, so nothing is ever
//! allocated from a header field: every count a header declares is checked against the file's
//! size before it is used, and every error names the file and the field.
//!
//! Times are seconds after the header's start date/time. A data record's start comes from its
//! time-keeping TAL in EDF+/BDF+ (which carries a sub-second start and the gaps of EDF+D) and
//! is `index × duration` in plain EDF/BDF.

use std::path::Path;

use crate::DataError;

/// 16-bit EDF or 24-bit BDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdfFormat {
    /// European Data Format, 16-bit samples.
    Edf,
    /// BioSemi Data Format, 24-bit samples.
    Bdf,
}

impl EdfFormat {
    fn bytes(self) -> usize {
        match self {
            EdfFormat::Edf => 2,
            EdfFormat::Bdf => 3,
        }
    }

    fn digital_range(self) -> (i32, i32) {
        match self {
            EdfFormat::Edf => (-32768, 32767),
            EdfFormat::Bdf => (-8_388_608, 8_388_607),
        }
    }

    fn annotation_label(self) -> &'static str {
        match self {
            EdfFormat::Edf => "EDF Annotations",
            EdfFormat::Bdf => "BDF Annotations",
        }
    }
}

/// One ordinary signal: its header fields and its samples in physical units.
#[derive(Debug, Clone, PartialEq)]
pub struct EdfSignal {
    /// Label (channel name), trimmed.
    pub label: String,
    /// Physical dimension (unit), trimmed.
    pub unit: String,
    /// Samples per second.
    pub sfreq: f64,
    /// Samples in each data record.
    pub samples_per_record: usize,
    /// Physical minimum and maximum as written (the minimum may exceed the maximum).
    pub physical: (f64, f64),
    /// Digital minimum and maximum.
    pub digital: (i32, i32),
    /// Every sample of every record, in physical units.
    pub values: Vec<f64>,
}

/// One annotation: onset (s after the start date/time), duration (s) and text.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Seconds after the header's start date/time.
    pub onset: f64,
    /// Duration in seconds, when given.
    pub duration: Option<f64>,
    /// The text (UTF-8).
    pub text: String,
}

/// A whole EDF/BDF file.
#[derive(Debug, Clone, PartialEq)]
pub struct EdfFile {
    /// EDF or BDF.
    pub format: EdfFormat,
    /// EDF+/BDF+ (has an annotation signal and a reserved field `EDF+C`/`EDF+D`).
    pub plus: bool,
    /// The EDF+D flag: records may have gaps between them.
    pub discontinuous: bool,
    /// Seconds per data record.
    pub record_duration: f64,
    /// Start of each data record, seconds after the start date/time.
    pub record_onsets: Vec<f64>,
    /// The ordinary signals (annotation signals excluded).
    pub signals: Vec<EdfSignal>,
    /// Every annotation except the time-keeping ones.
    pub annotations: Vec<Annotation>,
}

impl EdfFile {
    /// Sample indices (into a signal of `samples_per_record`) where a gap in time begins:
    /// record `r` does not start where record `r − 1` ended.
    pub fn breaks(&self, samples_per_record: usize) -> Vec<usize> {
        let d = self.record_duration;
        (1..self.record_onsets.len())
            .filter(|&r| (self.record_onsets[r] - (self.record_onsets[r - 1] + d)).abs() > 1e-6)
            .map(|r| r * samples_per_record)
            .collect()
    }

    /// The sample index (in a signal at `sfreq` with `samples_per_record`) of time `t`, or
    /// `None` when `t` falls outside every record.
    pub fn sample_at(&self, t: f64, sfreq: f64, samples_per_record: usize) -> Option<usize> {
        let d = self.record_duration;
        let r = self.record_onsets.partition_point(|&on| on <= t + 1e-9);
        let r = r.checked_sub(1)?;
        let within = t - self.record_onsets[r];
        if within >= d - 1e-9 * d.max(1.0) {
            return None;
        }
        let k = ((within * sfreq).round() as usize).min(samples_per_record - 1);
        Some(r * samples_per_record + k)
    }
}

/// Reads an EDF, EDF+, BDF or BDF+ file (the format comes from the first byte, not the name).
pub fn read(path: &Path) -> Result<EdfFile, DataError> {
    crate::error::read_parsed(path, parse)
}

/// Header text of `len` bytes at `at`: printable ASCII, trimmed.
fn field(bytes: &[u8], at: usize, len: usize, name: &str) -> Result<String, String> {
    let raw = bytes
        .get(at..at + len)
        .ok_or_else(|| format!("{name}: the header ends before this field"))?;
    if let Some(b) = raw.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
        return Err(format!(
            "{name}: byte 0x{b:02x} is not printable ASCII (EDF header fields are ASCII)"
        ));
    }
    // Checked ASCII above.
    Ok(String::from_utf8_lossy(raw).trim().to_string())
}

fn number<T: std::str::FromStr>(text: &str, name: &str, what: &str) -> Result<T, String> {
    text.parse::<T>()
        .map_err(|_| format!("{name}: \"{text}\" is not {what}"))
}

/// Parses a whole file held in memory.
pub fn parse(bytes: &[u8]) -> Result<EdfFile, String> {
    if bytes.len() < 256 {
        return Err(format!(
            "header: {} bytes, an EDF/BDF header has at least 256",
            bytes.len()
        ));
    }
    let format = if bytes[0] == 0xff && &bytes[1..8] == b"BIOSEMI" {
        EdfFormat::Bdf
    } else if &bytes[..8] == b"0       " {
        EdfFormat::Edf
    } else {
        return Err(
            "version: expected \"0\" (EDF) or 0xFF \"BIOSEMI\" (BDF); not an EDF/BDF file".into(),
        );
    };
    let header_bytes: usize = number(
        &field(bytes, 184, 8, "header bytes")?,
        "header bytes",
        "a byte count",
    )?;
    let reserved = field(bytes, 192, 44, "reserved")?;
    let n_records_text = field(bytes, 236, 8, "number of data records")?;
    let n_records: i64 = number(&n_records_text, "number of data records", "an integer")?;
    let record_duration: f64 = number(
        &field(bytes, 244, 8, "duration of a data record")?,
        "duration of a data record",
        "a number of seconds",
    )?;
    if !(record_duration.is_finite() && record_duration > 0.0) {
        return Err(format!(
            "duration of a data record: {record_duration} s; expected a positive duration"
        ));
    }
    let ns: usize = number(
        &field(bytes, 252, 4, "number of signals")?,
        "number of signals",
        "a count",
    )?;
    if ns == 0 {
        return Err("number of signals: 0; the file holds no signal".into());
    }
    let expected_header = 256 + 256 * ns.min(bytes.len());
    if expected_header > bytes.len() {
        return Err(format!(
            "number of signals: {ns} signals need a {expected_header}-byte header, the file has {} bytes",
            bytes.len()
        ));
    }
    if header_bytes != expected_header {
        return Err(format!(
            "header bytes: {header_bytes}, but {ns} signals make a {expected_header}-byte header"
        ));
    }
    let plus = reserved.starts_with("EDF+") || reserved.starts_with("BDF+");
    let discontinuous = reserved.starts_with("EDF+D") || reserved.starts_with("BDF+D");

    // Signal headers: each field is ns consecutive entries.
    let mut offset = 256;
    let mut col = |len: usize, name: &str| -> Result<Vec<String>, String> {
        let out = (0..ns)
            .map(|i| {
                field(
                    bytes,
                    offset + i * len,
                    len,
                    &format!("signal {} {name}", i + 1),
                )
            })
            .collect();
        offset += ns * len;
        out
    };
    let labels = col(16, "label")?;
    let _transducer = col(80, "transducer")?;
    let units = col(8, "physical dimension")?;
    let pmins = col(8, "physical minimum")?;
    let pmaxs = col(8, "physical maximum")?;
    let dmins = col(8, "digital minimum")?;
    let dmaxs = col(8, "digital maximum")?;
    let _prefilter = col(80, "prefiltering")?;
    let sprs = col(8, "samples per record")?;
    let (lo, hi) = format.digital_range();
    let ann_label = format.annotation_label();

    struct Head {
        label: String,
        unit: String,
        physical: (f64, f64),
        digital: (i32, i32),
        spr: usize,
        annotation: bool,
    }
    let mut heads = Vec::with_capacity(ns);
    for i in 0..ns {
        let name = |f: &str| format!("signal {} (\"{}\") {f}", i + 1, labels[i]);
        let spr: usize = number(&sprs[i], &name("samples per record"), "a count")?;
        if spr == 0 {
            return Err(format!("{}: 0", name("samples per record")));
        }
        let annotation = labels[i] == ann_label;
        let dmin: i32 = number(&dmins[i], &name("digital minimum"), "an integer")?;
        let dmax: i32 = number(&dmaxs[i], &name("digital maximum"), "an integer")?;
        let pmin: f64 = number(&pmins[i], &name("physical minimum"), "a number")?;
        let pmax: f64 = number(&pmaxs[i], &name("physical maximum"), "a number")?;
        if !annotation {
            if dmin >= dmax || dmin < lo || dmax > hi {
                return Err(format!(
                    "{}: digital range [{dmin}, {dmax}] must satisfy {lo} ≤ min < max ≤ {hi}",
                    name("digital minimum/maximum")
                ));
            }
            if !(pmin.is_finite() && pmax.is_finite()) || pmin == pmax {
                return Err(format!(
                    "{}: physical range [{pmin}, {pmax}] must be two different finite numbers",
                    name("physical minimum/maximum")
                ));
            }
        }
        heads.push(Head {
            label: labels[i].clone(),
            unit: units[i].clone(),
            physical: (pmin, pmax),
            digital: (dmin, dmax),
            spr,
            annotation,
        });
    }
    if plus && !heads.iter().any(|h| h.annotation) {
        return Err(format!(
            "reserved: \"{reserved}\" declares EDF+/BDF+ but no signal is labelled \"{ann_label}\""
        ));
    }

    // Records: sizes checked against the file before anything is allocated from them.
    let width = format.bytes();
    let record_bytes = heads
        .iter()
        .try_fold(0usize, |a, h| h.spr.checked_mul(width)?.checked_add(a))
        .filter(|&b| b > 0 && b <= bytes.len())
        .ok_or("samples per record: one data record would be larger than the file")?;
    let data = &bytes[header_bytes..];
    let n_records = match n_records {
        -1 => data.len() / record_bytes,
        n if n >= 0 => {
            let n = n as usize;
            if n.checked_mul(record_bytes) != Some(data.len()) {
                let have = data.len() / record_bytes;
                return Err(format!(
                    "number of data records: the header declares {n} records of {record_bytes} bytes, the file holds {} bytes of data ({have} whole records){}",
                    data.len(),
                    if data.len() < n.saturating_mul(record_bytes) { "; the file is truncated" } else { "" }
                ));
            }
            n
        }
        n => {
            return Err(format!(
                "number of data records: {n}; expected a count or -1"
            ))
        }
    };
    if n_records == 0 {
        return Err("number of data records: 0; the file holds no data".into());
    }

    let mut signals: Vec<EdfSignal> = Vec::new();
    let mut index_of = Vec::with_capacity(ns);
    for h in &heads {
        if h.annotation {
            index_of.push(None);
        } else {
            index_of.push(Some(signals.len()));
            signals.push(EdfSignal {
                label: h.label.clone(),
                unit: h.unit.clone(),
                sfreq: h.spr as f64 / record_duration,
                samples_per_record: h.spr,
                physical: h.physical,
                digital: h.digital,
                values: Vec::with_capacity(h.spr * n_records),
            });
        }
    }
    let mut record_onsets = Vec::with_capacity(n_records);
    let mut annotations = Vec::new();
    for r in 0..n_records {
        let mut at = r * record_bytes;
        let mut keeping: Option<f64> = None;
        for (h, idx) in heads.iter().zip(&index_of) {
            let chunk = &data[at..at + h.spr * width];
            at += h.spr * width;
            match idx {
                Some(s) => {
                    let (pmin, pmax) = h.physical;
                    let (dmin, dmax) = h.digital;
                    let gain = (pmax - pmin) / (dmax - dmin) as f64;
                    let out = &mut signals[*s].values;
                    for c in chunk.chunks_exact(width) {
                        let d = match width {
                            2 => i16::from_le_bytes([c[0], c[1]]) as i32,
                            // Sign-extend the 24-bit value through the top byte.
                            _ => i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8,
                        };
                        out.push((d - dmin) as f64 * gain + pmin);
                    }
                }
                None => {
                    let tals = parse_tals(chunk)
                        .map_err(|e| format!("data record {} annotation signal: {e}", r + 1))?;
                    for (i, a) in tals.into_iter().enumerate() {
                        // The first TAL of the first annotation signal keeps the record's time.
                        if i == 0 && keeping.is_none() && a.text.is_empty() {
                            keeping = Some(a.onset);
                        } else if !a.text.is_empty() {
                            annotations.push(a);
                        }
                    }
                }
            }
        }
        let onset = match keeping {
            Some(t) => t,
            None if plus => {
                return Err(format!(
                "data record {}: EDF+ requires a time-keeping TAL first in the annotation signal",
                r + 1
            ))
            }
            None => r as f64 * record_duration,
        };
        if let Some(&prev) = record_onsets.last() {
            if onset < prev + record_duration - 1e-6 {
                return Err(format!(
                    "data record {}: starts at {onset} s, before the previous record ends ({} s)",
                    r + 1,
                    prev + record_duration
                ));
            }
        }
        record_onsets.push(onset);
    }
    Ok(EdfFile {
        format,
        plus,
        discontinuous,
        record_duration,
        record_onsets,
        signals,
        annotations,
    })
}

/// Time-stamped annotation lists of one record's annotation signal.
///
/// Each TAL is `+onset[\x15duration]\x14text\x14[text\x14…]\x00`; the rest is `\x00` padding.
/// A TAL with no text is still returned (empty text): the first one keeps the record's time.
fn parse_tals(chunk: &[u8]) -> Result<Vec<Annotation>, String> {
    let mut out = Vec::new();
    for tal in chunk.split(|&b| b == 0).filter(|t| !t.is_empty()) {
        let mut parts = tal.split(|&b| b == 0x14);
        let stamp = parts.next().unwrap_or_default();
        let stamp = std::str::from_utf8(stamp).map_err(|_| "a time stamp is not text")?;
        let (onset_text, duration_text) = match stamp.split_once('\x15') {
            Some((o, d)) => (o, Some(d)),
            None => (stamp, None),
        };
        if !(onset_text.starts_with('+') || onset_text.starts_with('-')) {
            return Err(format!("onset \"{onset_text}\" must start with '+' or '-'"));
        }
        let onset: f64 = onset_text
            .parse()
            .map_err(|_| format!("onset \"{onset_text}\" is not a number"))?;
        let duration = match duration_text {
            Some(d) if !d.is_empty() => Some(
                d.parse::<f64>()
                    .ok()
                    .filter(|d| d.is_finite() && *d >= 0.0)
                    .ok_or(format!("duration \"{d}\" is not a number of seconds"))?,
            ),
            _ => None,
        };
        if !onset.is_finite() {
            return Err(format!("onset \"{onset_text}\" is not finite"));
        }
        let texts: Vec<&[u8]> = parts.filter(|p| !p.is_empty()).collect();
        if texts.is_empty() {
            out.push(Annotation {
                onset,
                duration,
                text: String::new(),
            });
        }
        for t in texts {
            let text = std::str::from_utf8(t)
                .map_err(|_| format!("the annotation at {onset} s is not UTF-8"))?;
            out.push(Annotation {
                onset,
                duration,
                text: text.to_string(),
            });
        }
    }
    Ok(out)
}

/// What [`write`] puts in a file: equal-length windows, one data record per window.
#[derive(Debug, Clone, Copy)]
pub struct EdfWindows<'a> {
    /// `[n, channels, time]` in physical units.
    pub values: &'a [f32],
    /// Windows.
    pub n: usize,
    /// Channel names (at most 16 ASCII characters are kept).
    pub channel_names: &'a [String],
    /// Samples per window.
    pub time: usize,
    /// Samples per second.
    pub sfreq: f64,
    /// Physical dimension of every channel (`uV`, `count`).
    pub unit: &'a str,
    /// One annotation per window at its onset (its label), or none.
    pub labels: Option<&'a [String]>,
    /// Integer counts: digital step 1 so counts come back exactly.
    pub integer: bool,
}

/// An EDF header number: the shortest text of at most 8 characters that parses back within
/// `tolerance`, rounded in the direction `dir` (−1 down, +1 up, 0 nearest).
fn fit8(x: f64, dir: i32) -> Option<String> {
    for decimals in (0..=7).rev() {
        let scale = 10f64.powi(decimals);
        let v = match dir {
            d if d < 0 => (x * scale).floor() / scale,
            d if d > 0 => (x * scale).ceil() / scale,
            _ => (x * scale).round() / scale,
        };
        let s = format!("{v:.*}", decimals as usize);
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        let s = if s == "-0" { "0".to_string() } else { s };
        if s.len() <= 8 {
            return Some(s);
        }
    }
    None
}

/// `i × d` written exactly, for the decimal `d` (at most 8 characters): TAL onsets have no
/// length limit, and EDF+C readers check that record `i` starts at exactly `i × d`.
fn times(d: &str, i: usize) -> String {
    let (whole, frac) = d.split_once('.').unwrap_or((d, ""));
    let mantissa: u128 = format!("{whole}{frac}").parse().unwrap_or(0);
    let v = (mantissa * i as u128).to_string();
    if frac.is_empty() {
        return v;
    }
    let v = format!("{v:0>width$}", width = frac.len() + 1);
    let (int, dec) = v.split_at(v.len() - frac.len());
    let dec = dec.trim_end_matches('0');
    if dec.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{dec}")
    }
}

fn pad(out: &mut Vec<u8>, text: &str, len: usize) {
    let mut b: Vec<u8> = text
        .bytes()
        .map(|c| if (0x20..=0x7e).contains(&c) { c } else { b'_' })
        .take(len)
        .collect();
    b.resize(len, b' ');
    out.extend_from_slice(&b);
}

/// Writes windows as an EDF+C (or BDF+C) file, atomically: one data record per window,
/// anonymous patient and recording fields, per-channel physical ranges that cover the samples.
pub fn write(path: &Path, format: EdfFormat, w: &EdfWindows) -> Result<(), DataError> {
    let bad = |message: String| DataError::Format {
        path: path.to_path_buf(),
        message,
    };
    let channels = w.channel_names.len();
    if w.n == 0 || channels == 0 || w.time == 0 || w.values.len() != w.n * channels * w.time {
        return Err(bad(format!(
            "nothing to write: {} values for {} windows of {channels} channels × {} samples",
            w.values.len(),
            w.n,
            w.time
        )));
    }
    if let Some(v) = w.values.iter().find(|v| !v.is_finite()) {
        return Err(bad(format!(
            "a sample is {v}; EDF stores finite values only"
        )));
    }
    let duration = w.time as f64 / w.sfreq;
    let duration_text = fit8(duration, 0)
        .filter(|s| s.parse::<f64>().is_ok_and(|d| (d * w.sfreq - w.time as f64).abs() < 1e-6))
        .ok_or_else(|| {
            bad(format!(
                "a window of {} samples at {} Hz lasts {duration} s, which an EDF record duration (8 characters) cannot state exactly",
                w.time, w.sfreq
            ))
        })?;
    let (dlo, dhi) = format.digital_range();
    // Per channel: physical range covering every sample, rounded outward to 8 characters.
    let mut ranges = Vec::with_capacity(channels);
    for c in 0..channels {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for i in 0..w.n {
            let row = &w.values[(i * channels + c) * w.time..(i * channels + c + 1) * w.time];
            for &v in row {
                lo = lo.min(v as f64);
                hi = hi.max(v as f64);
            }
        }
        let (pmin, pmax) = if w.integer && hi - lo <= (dhi - dlo) as f64 {
            // Step exactly 1: physical = digital − dmin + pmin.
            (lo.floor(), lo.floor() + (dhi - dlo) as f64)
        } else {
            let margin = ((hi - lo) * 1e-6)
                .max(1e-6 * hi.abs().max(lo.abs()))
                .max(1e-9);
            let (lo, hi) = if hi - lo < 1e-6 {
                (lo - 1.0, hi + 1.0)
            } else {
                (lo - margin, hi + margin)
            };
            let a = fit8(lo, -1).and_then(|s| s.parse::<f64>().ok());
            let b = fit8(hi, 1).and_then(|s| s.parse::<f64>().ok());
            match (a, b) {
                (Some(a), Some(b)) => (a, b),
                _ => {
                    return Err(bad(format!(
                    "channel \"{}\": values up to {hi} do not fit the 8-character physical range",
                    w.channel_names[c]
                )))
                }
            }
        };
        ranges.push((pmin, pmax));
    }
    // Annotation signal: time-keeping TAL plus this window's label.
    let tals: Vec<Vec<u8>> = (0..w.n)
        .map(|i| {
            let t = times(&duration_text, i);
            let mut tal = format!("+{t}\x14\x14\0").into_bytes();
            if let Some(labels) = w.labels {
                tal.extend_from_slice(format!("+{t}\x14{}\x14\0", labels[i]).as_bytes());
            }
            tal
        })
        .collect();
    let width = format.bytes();
    let ann_samples = annotation_samples(&tals, width);

    let ns = channels + 1;
    let mut out = Vec::with_capacity(256 * (ns + 1) + w.values.len() * width);
    match format {
        EdfFormat::Edf => pad(&mut out, "0", 8),
        EdfFormat::Bdf => {
            out.push(0xff);
            pad(&mut out, "BIOSEMI", 7);
        }
    }
    pad(&mut out, "X X X X", 80);
    pad(&mut out, "Startdate X X X X", 80);
    pad(&mut out, "01.01.85", 8);
    pad(&mut out, "00.00.00", 8);
    pad(&mut out, &(256 * (ns + 1)).to_string(), 8);
    pad(
        &mut out,
        match format {
            EdfFormat::Edf => "EDF+C",
            EdfFormat::Bdf => "BDF+C",
        },
        44,
    );
    pad(&mut out, &w.n.to_string(), 8);
    pad(&mut out, &duration_text, 8);
    pad(&mut out, &ns.to_string(), 4);
    let ann = format.annotation_label();
    let fmt_num = |x: f64| fit8(x, 0).unwrap_or_default();
    for name in w.channel_names {
        pad(&mut out, name, 16);
    }
    pad(&mut out, ann, 16);
    for _ in 0..ns {
        pad(&mut out, "", 80);
    }
    for _ in 0..channels {
        pad(&mut out, w.unit, 8);
    }
    pad(&mut out, "", 8);
    for (pmin, _) in &ranges {
        pad(&mut out, &fmt_num(*pmin), 8);
    }
    pad(&mut out, "-1", 8);
    for (_, pmax) in &ranges {
        pad(&mut out, &fmt_num(*pmax), 8);
    }
    pad(&mut out, "1", 8);
    for _ in 0..ns {
        pad(&mut out, &dlo.to_string(), 8);
    }
    for _ in 0..ns {
        pad(&mut out, &dhi.to_string(), 8);
    }
    for _ in 0..ns {
        pad(&mut out, "", 80);
    }
    for _ in 0..channels {
        pad(&mut out, &w.time.to_string(), 8);
    }
    pad(&mut out, &ann_samples.to_string(), 8);
    for _ in 0..ns {
        pad(&mut out, "", 32);
    }
    for (i, tal) in tals.iter().enumerate() {
        for (c, &(pmin, pmax)) in ranges.iter().enumerate() {
            let gain = (pmax - pmin) / (dhi - dlo) as f64;
            let row = &w.values[(i * channels + c) * w.time..(i * channels + c + 1) * w.time];
            for &v in row {
                let d = (((v as f64 - pmin) / gain).round() as i64 + dlo as i64)
                    .clamp(dlo as i64, dhi as i64) as i32;
                out.extend_from_slice(&d.to_le_bytes()[..width]);
            }
        }
        let start = out.len();
        out.extend_from_slice(tal);
        out.resize(start + ann_samples * width, 0);
    }
    crate::io::write_atomic(path, &out)
}

/// The file of `bytes` (EDF, EDF+, BDF or BDF+) with `extra` annotations added, as EDF+/BDF+:
/// every ordinary signal's samples and header fields are copied byte for byte, the annotation
/// signals are replaced by one that carries each record's time-keeping TAL, the file's own
/// annotations and `extra`, each in the record where it begins. A plain EDF becomes EDF+C,
/// its patient and recording fields prefixed with EDF+'s "X X X X" / "Startdate X X X X"
/// (the original text kept after them, as EDF+ allows).
pub fn annotate(bytes: &[u8], extra: &[Annotation]) -> Result<Vec<u8>, String> {
    let file = parse(bytes)?;
    let ns: usize = number(
        &field(bytes, 252, 4, "number of signals")?,
        "number of signals",
        "a count",
    )?;
    let width = file.format.bytes();
    let ann_label = file.format.annotation_label();
    // The raw header entries of every signal, column by column.
    const COLUMNS: [usize; 10] = [16, 80, 8, 8, 8, 8, 8, 80, 8, 32];
    let mut columns: Vec<Vec<&[u8]>> = Vec::with_capacity(COLUMNS.len());
    let mut at = 256;
    for len in COLUMNS {
        columns.push(
            (0..ns)
                .map(|i| &bytes[at + i * len..at + (i + 1) * len])
                .collect(),
        );
        at += ns * len;
    }
    let label = |i: usize| String::from_utf8_lossy(columns[0][i]).trim().to_string();
    let spr: Vec<usize> = (0..ns)
        .map(|i| {
            number::<usize>(
                String::from_utf8_lossy(columns[8][i]).trim(),
                "samples per record",
                "a count",
            )
        })
        .collect::<Result<_, _>>()?;
    let keep: Vec<usize> = (0..ns).filter(|&i| label(i) != ann_label).collect();
    let n_records = file.record_onsets.len();
    // TALs per record: time-keeping first, then every annotation beginning in that record.
    let duration_text = field(bytes, 244, 8, "duration of a data record")?;
    let mut tals: Vec<Vec<u8>> = (0..n_records)
        .map(|r| {
            let t = if file.plus {
                format!("{}", file.record_onsets[r])
            } else {
                times(&duration_text, r)
            };
            format!("+{t}\x14\x14\0").into_bytes()
        })
        .collect();
    for a in file.annotations.iter().chain(extra) {
        if !a.onset.is_finite() || a.text.contains(['\x14', '\x15', '\0']) {
            return Err(format!(
                "annotation {:?} at {} s cannot be written as a TAL",
                a.text, a.onset
            ));
        }
        let r = file
            .record_onsets
            .partition_point(|&on| on <= a.onset + 1e-9)
            .saturating_sub(1);
        let sign = if a.onset < 0.0 { "-" } else { "+" };
        let mut tal = format!("{sign}{}", a.onset.abs());
        if let Some(d) = a.duration {
            tal.push_str(&format!("\x15{d}"));
        }
        tal.push_str(&format!("\x14{}\x14\0", a.text));
        tals[r].extend_from_slice(tal.as_bytes());
    }
    let ann_samples = annotation_samples(&tals, width);

    let ns2 = keep.len() + 1;
    let header_bytes = 256 * (ns2 + 1);
    let record_in: usize = spr.iter().map(|s| s * width).sum();
    let mut out = Vec::with_capacity(header_bytes + n_records * (record_in + ann_samples * width));
    out.extend_from_slice(&bytes[..8]);
    if file.plus {
        out.extend_from_slice(&bytes[8..168]);
    } else {
        let text = |at: usize| {
            String::from_utf8_lossy(&bytes[at..at + 80])
                .trim()
                .to_string()
        };
        pad(&mut out, &format!("X X X X {}", text(8)), 80);
        pad(&mut out, &format!("Startdate X X X X {}", text(88)), 80);
    }
    out.extend_from_slice(&bytes[168..184]);
    pad(&mut out, &header_bytes.to_string(), 8);
    let plus_kind = match (file.format, file.discontinuous) {
        (EdfFormat::Edf, false) => "EDF+C",
        (EdfFormat::Edf, true) => "EDF+D",
        (EdfFormat::Bdf, false) => "BDF+C",
        (EdfFormat::Bdf, true) => "BDF+D",
    };
    pad(&mut out, plus_kind, 44);
    pad(&mut out, &n_records.to_string(), 8);
    out.extend_from_slice(&bytes[244..252]);
    pad(&mut out, &ns2.to_string(), 4);
    let (dlo, dhi) = file.format.digital_range();
    let new_entry: [String; 10] = [
        ann_label.to_string(),
        String::new(),
        String::new(),
        "-1".into(),
        "1".into(),
        dlo.to_string(),
        dhi.to_string(),
        String::new(),
        ann_samples.to_string(),
        String::new(),
    ];
    for (col, len) in COLUMNS.iter().enumerate() {
        for &i in &keep {
            out.extend_from_slice(columns[col][i]);
        }
        pad(&mut out, &new_entry[col], *len);
    }
    let data = &bytes[256 * (ns + 1)..];
    for (r, tal) in tals.iter().enumerate() {
        let record = &data[r * record_in..(r + 1) * record_in];
        let mut at = 0;
        for (i, &n) in spr.iter().enumerate() {
            let len = n * width;
            if keep.contains(&i) {
                out.extend_from_slice(&record[at..at + len]);
            }
            at += len;
        }
        let start = out.len();
        out.extend_from_slice(tal);
        out.resize(start + ann_samples * width, 0);
    }
    Ok(out)
}

/// Samples per record of the annotation signal: room for the longest record's TALs in
/// `width`-byte samples, and never fewer than 8.
fn annotation_samples(tals: &[Vec<u8>], width: usize) -> usize {
    tals.iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .div_ceil(width)
        .max(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_numbers_fit_eight_characters_and_round_outward() {
        assert_eq!(fit8(1.5, 0).unwrap(), "1.5");
        assert_eq!(fit8(-123.456789, -1).unwrap(), "-123.457");
        assert_eq!(fit8(123.456789, 1).unwrap(), "123.4568");
        assert_eq!(fit8(-0.0000001, 0).unwrap(), "0");
        assert!(fit8(1e12, 0).is_none());
    }

    #[test]
    fn record_onsets_are_exact_multiples() {
        assert_eq!(times("0.25", 0), "0");
        assert_eq!(times("0.25", 3), "0.75");
        assert_eq!(times("0.1", 3), "0.3");
        assert_eq!(times("0.0625", 1_000_003), "62500.1875");
        assert_eq!(times("2", 7), "14");
    }

    /// A small file of 3 windows (records) of 2 channels × 8 samples, labelled, written by
    /// [`write`] and read back as bytes.
    fn small_file(format: EdfFormat) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.edf");
        let values: Vec<f32> = (0..48).map(|i| (i as f32 * 0.7).sin() * 50.0).collect();
        let names = ["A".to_string(), "B".to_string()];
        let labels = ["one".to_string(), "two".to_string(), "one".to_string()];
        write(
            &path,
            format,
            &EdfWindows {
                values: &values,
                n: 3,
                channel_names: &names,
                time: 8,
                sfreq: 16.0,
                unit: "uV",
                labels: Some(&labels),
                integer: false,
            },
        )
        .unwrap();
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn annotating_keeps_every_sample_and_annotation_and_adds_ours() {
        for format in [EdfFormat::Edf, EdfFormat::Bdf] {
            let bytes = small_file(format);
            let before = parse(&bytes).unwrap();
            let ours = [
                Annotation {
                    onset: 0.25,
                    duration: Some(0.5),
                    text: "neurogen:anomaly p=1.0e-3".into(),
                },
                Annotation {
                    onset: 1.0,
                    duration: Some(0.5),
                    text: "neurogen:anomaly p=2.0e-3".into(),
                },
            ];
            let after = parse(&annotate(&bytes, &ours).unwrap()).unwrap();
            assert!(after.plus && !after.discontinuous);
            assert_eq!(after.signals, before.signals);
            assert_eq!(after.record_onsets, before.record_onsets);
            let mut want = before.annotations.clone();
            want.extend(ours.iter().cloned());
            let mut got = after.annotations.clone();
            let key = |a: &Annotation| (a.onset.to_bits(), a.text.clone());
            want.sort_by_key(key);
            got.sort_by_key(key);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_plain_edf_becomes_edf_plus_c_with_time_keeping() {
        // Strip the EDF+ marks: reserved field blank, no annotation signal.
        let bytes = small_file(EdfFormat::Edf);
        let f = parse(&bytes).unwrap();
        let plain = {
            let mut out = bytes[..256].to_vec();
            out[192..236].copy_from_slice(&[b' '; 44]);
            out[252..256].copy_from_slice(b"2   ");
            out[184..192].copy_from_slice(b"768     ");
            let ns = 3;
            let mut at = 256;
            for len in [16, 80, 8, 8, 8, 8, 8, 80, 8, 32] {
                out.extend_from_slice(&bytes[at..at + 2 * len]);
                at += ns * len;
            }
            let spr_ann: usize =
                String::from_utf8_lossy(&bytes[256 + ns * 216 + 2 * 8..256 + ns * 216 + 3 * 8])
                    .trim()
                    .parse()
                    .unwrap();
            let data = &bytes[256 * (ns + 1)..];
            let rec = (16 + spr_ann) * 2;
            for r in 0..3 {
                out.extend_from_slice(&data[r * rec..r * rec + 32]);
            }
            out
        };
        let p = parse(&plain).unwrap();
        assert!(!p.plus && p.annotations.is_empty());
        let ours = [Annotation {
            onset: 0.5,
            duration: Some(1.0),
            text: "neurogen:anomaly p=5.0e-3".into(),
        }];
        let out = annotate(&plain, &ours).unwrap();
        let a = parse(&out).unwrap();
        assert!(a.plus);
        assert_eq!(a.signals, f.signals);
        assert_eq!(a.record_onsets, vec![0.0, 0.5, 1.0]);
        assert_eq!(a.annotations, ours.to_vec());
        assert!(out[8..88].starts_with(b"X X X X "));
        assert!(out[88..168].starts_with(b"Startdate X X X X "));
    }

    #[test]
    fn tals_keep_time_duration_and_utf8_text() {
        let chunk = b"+0.25\x14\x14\0+1.5\x152\x14stim \xc2\xb5\x14second\x14\0\0\0";
        let t = parse_tals(chunk).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].onset, t[0].text.as_str()), (0.25, ""));
        assert_eq!(t[1].duration, Some(2.0));
        assert_eq!(t[1].text, "stim µ");
        assert_eq!(t[2].text, "second");
        assert!(parse_tals(b"1.5\x14x\x14\0").unwrap_err().contains("'+'"));
    }
}
