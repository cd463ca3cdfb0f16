//! Any bytes given to the EDF/BDF reader end in a file or an error, never a panic, and never
//! an allocation sized by an unchecked header field.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = neurogen_data::edf::parse(data) {
        // What was read must be usable: breaks and sample positions stay in range.
        for s in &f.signals {
            let _ = f.breaks(s.samples_per_record);
            let _ = f.sample_at(1.0, s.sfreq, s.samples_per_record);
        }
    }
});
