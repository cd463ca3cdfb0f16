//! CSV in the two layouts people keep neural data in, read and written with the `csv` crate.
//!
//! - **channels**: one row per sample, one column per channel (a header row names them); an
//!   optional time column gives the sampling rate.
//! - **trials** (the EEG-GAN layout): one row per trial and electrode, identifier columns
//!   (condition, trial, electrode, participant) and then one column per time point.

use std::path::Path;

use crate::DataError;

/// A continuous table: `[channels, samples]` values, names, and the rate a time column gives.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelTable {
    /// Channel names from the header.
    pub channel_names: Vec<String>,
    /// `[channels, samples]`, row-major.
    pub data: Vec<f32>,
    /// Samples per channel.
    pub samples: usize,
    /// `1 / step` of the time column, when there is one.
    pub sfreq: Option<f64>,
}

/// Trials: `[n, channels, time]` values with a condition per trial.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialTable {
    /// Electrode names in the order of the first trial (`["0"]` without an electrode column).
    pub channel_names: Vec<String>,
    /// `[n, channels, time]`, row-major.
    pub data: Vec<f32>,
    /// Trials.
    pub n: usize,
    /// Time points per trial.
    pub time: usize,
    /// The condition of each trial, when the file has the condition column.
    pub conditions: Option<Vec<String>>,
}

/// Names of the identifier columns of the trials layout (matched case-insensitively).
#[derive(Debug, Clone, PartialEq)]
pub struct TrialColumns<'a> {
    /// Condition (the label).
    pub condition: &'a str,
    /// Trial number.
    pub trial: &'a str,
    /// Electrode (channel) name.
    pub electrode: &'a str,
    /// Further columns that are neither time points nor the above (participant, session).
    pub ignore: &'a [String],
}

/// The csv crate's message without its "CSV error: " prefix (ours already says where).
fn describe(e: &::csv::Error) -> String {
    let text = e.to_string();
    text.strip_prefix("CSV error: ")
        .unwrap_or(&text)
        .to_string()
}

/// The reader, past its header row, and the header's column names.
fn open(path: &Path) -> Result<(::csv::Reader<std::fs::File>, Vec<String>), DataError> {
    let f = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut r = ::csv::ReaderBuilder::new()
        .trim(::csv::Trim::All)
        // Rows of the wrong width are reported by `record` with the header's width.
        .flexible(true)
        .from_reader(f);
    let header = r
        .headers()
        .map_err(|e| format_err(path, format!("header row: {}", describe(&e))))?
        .iter()
        .map(str::to_string)
        .collect();
    Ok((r, header))
}

fn format_err(path: &Path, message: String) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        message,
    }
}

fn number<T: std::str::FromStr>(
    path: &Path,
    text: &str,
    row: usize,
    column: &str,
) -> Result<T, DataError> {
    text.parse::<T>().map_err(|_| {
        format_err(
            path,
            format!("row {row}, column \"{column}\": \"{text}\" is not a number"),
        )
    })
}

/// Record `i` (file row `i + 2`, after the header) with as many fields as the header.
fn checked(
    path: &Path,
    i: usize,
    rec: Result<::csv::StringRecord, ::csv::Error>,
    width: usize,
) -> Result<(usize, ::csv::StringRecord), DataError> {
    let row = i + 2;
    let rec = rec.map_err(|e| format_err(path, format!("row {row}: {}", describe(&e))))?;
    if rec.len() != width {
        return Err(format_err(
            path,
            format!("row {row}: {} fields, the header has {width}", rec.len()),
        ));
    }
    Ok((row, rec))
}

/// Columns that hold time in the channels layout, when they come first.
const TIME_NAMES: &[&str] = &["time", "t", "seconds", "time_s", "timestamp"];

/// Reads the channels layout.
pub fn read_channels(path: &Path) -> Result<ChannelTable, DataError> {
    let (mut r, header) = open(path)?;
    let time_col = header
        .first()
        .is_some_and(|h| TIME_NAMES.contains(&h.to_ascii_lowercase().as_str()));
    let first = usize::from(time_col);
    let channel_names: Vec<String> = header[first..].to_vec();
    if channel_names.is_empty() {
        return Err(format_err(path, "header row: no channel column".into()));
    }
    let mut cols: Vec<Vec<f32>> = vec![Vec::new(); channel_names.len()];
    let mut times = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let (row, rec) = checked(path, i, rec, header.len())?;
        if time_col {
            // f64: a time axis in f32 would misstate the rate.
            times.push(number::<f64>(path, &rec[0], row, &header[0])?);
        }
        for (c, col) in cols.iter_mut().enumerate() {
            col.push(number(path, &rec[first + c], row, &channel_names[c])?);
        }
    }
    let samples = cols[0].len();
    if samples == 0 {
        return Err(format_err(path, "no data rows".into()));
    }
    let sfreq = if times.len() >= 2 {
        let step = (times[times.len() - 1] - times[0]) / (times.len() - 1) as f64;
        let uniform = times
            .windows(2)
            .all(|w| ((w[1] - w[0]) - step).abs() <= 0.01 * step.abs());
        if !(step > 0.0 && uniform) {
            return Err(format_err(
                path,
                format!(
                    "column \"{}\": time steps are not uniform and increasing; give sfreq in [data] and drop the column",
                    header[0]
                ),
            ));
        }
        Some(1.0 / step)
    } else {
        None
    };
    Ok(ChannelTable {
        channel_names,
        data: cols.concat(),
        samples,
        sfreq,
    })
}

/// Reads the trials layout.
pub fn read_trials(path: &Path, names: &TrialColumns) -> Result<TrialTable, DataError> {
    let (mut r, header) = open(path)?;
    let find = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (cond, trial, elec) = (
        find(names.condition),
        find(names.trial),
        find(names.electrode),
    );
    let ids: Vec<usize> = [cond, trial, elec]
        .into_iter()
        .flatten()
        .chain(names.ignore.iter().filter_map(|n| find(n)))
        .collect();
    let time_cols: Vec<usize> = (0..header.len()).filter(|c| !ids.contains(c)).collect();
    if time_cols.is_empty() {
        return Err(format_err(path, "header row: no time-point column".into()));
    }
    let time = time_cols.len();
    let mut channel_names: Vec<String> = Vec::new();
    let mut data = Vec::new();
    let mut conditions = Vec::new();
    // The trial being filled: its key, condition and electrodes seen so far.
    let mut current: Option<(String, String, Vec<String>)> = None;
    let mut n = 0usize;
    let finish = |cur: &Option<(String, String, Vec<String>)>,
                  channel_names: &[String]|
     -> Result<(), DataError> {
        if let Some((key, _, seen)) = cur {
            if seen.len() != channel_names.len() {
                return Err(format_err(
                    path,
                    format!(
                        "trial {key}: {} electrode rows, the first trial has {} ({})",
                        seen.len(),
                        channel_names.len(),
                        channel_names.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    };
    for (i, rec) in r.records().enumerate() {
        let (row, rec) = checked(path, i, rec, header.len())?;
        let electrode = elec.map(|c| rec[c].to_string()).unwrap_or("0".into());
        let condition = cond.map(|c| rec[c].to_string()).unwrap_or_default();
        let key = trial.map(|c| rec[c].to_string());
        let new_trial = match &current {
            None => true,
            Some((k, _, seen)) => match &key {
                Some(key) => key != k,
                None => seen.contains(&electrode),
            },
        };
        if new_trial {
            finish(&current, &channel_names)?;
            current = Some((
                key.unwrap_or_else(|| format!("at row {row}")),
                condition.clone(),
                Vec::new(),
            ));
            n += 1;
            conditions.push(condition.clone());
        }
        let Some((k, c0, seen)) = current.as_mut() else {
            continue;
        };
        if *c0 != condition {
            return Err(format_err(
                path,
                format!("row {row}: trial {k} changes condition from \"{c0}\" to \"{condition}\""),
            ));
        }
        if seen.contains(&electrode) {
            return Err(format_err(
                path,
                format!("row {row}: trial {k} has electrode \"{electrode}\" twice"),
            ));
        }
        if n == 1 {
            channel_names.push(electrode.clone());
        } else if channel_names.get(seen.len()) != Some(&electrode) {
            return Err(format_err(
                path,
                format!(
                    "row {row}: trial {k} has electrode \"{electrode}\" where the first trial has \"{}\"; every trial lists its electrodes in one order",
                    channel_names.get(seen.len()).map(String::as_str).unwrap_or("none")
                ),
            ));
        }
        seen.push(electrode);
        for &c in &time_cols {
            data.push(number(path, &rec[c], row, &header[c])?);
        }
    }
    finish(&current, &channel_names)?;
    if n == 0 {
        return Err(format_err(path, "no data rows".into()));
    }
    Ok(TrialTable {
        channel_names,
        data,
        n,
        time,
        conditions: cond.map(|_| conditions),
    })
}

/// Writes windows in the trials layout (`Trial,[Condition,]Electrode,Time1..TimeT`), atomically.
pub fn write_trials(
    path: &Path,
    values: &[f32],
    n: usize,
    channel_names: &[String],
    time: usize,
    labels: Option<&[String]>,
) -> Result<(), DataError> {
    let channels = channel_names.len();
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let io = |e: ::csv::Error| DataError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let mut head = vec!["Trial".to_string()];
    if labels.is_some() {
        head.push("Condition".into());
    }
    head.push("Electrode".into());
    head.extend((1..=time).map(|t| format!("Time{t}")));
    w.write_record(&head).map_err(io)?;
    for i in 0..n {
        for (c, name) in channel_names.iter().enumerate() {
            let mut rec = vec![i.to_string()];
            if let Some(l) = labels {
                rec.push(l[i].clone());
            }
            rec.push(name.clone());
            let row = &values[(i * channels + c) * time..(i * channels + c + 1) * time];
            rec.extend(row.iter().map(|v| v.to_string()));
            w.write_record(&rec).map_err(io)?;
        }
    }
    let bytes = w.into_inner().map_err(|e| DataError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    crate::io::write_atomic(path, &bytes)
}
