//! Any bytes given to the NPY and NPZ readers end in arrays or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = neurogen_data::npy::parse(data);
    let _ = neurogen_data::npy::parse_npz(data);
});
