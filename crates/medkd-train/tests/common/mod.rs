//! What the test files that train share.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// burn's random generator is one per device, shared by the test threads and reseeded by each
/// run: each test that trains holds this lock, so another test's draws cannot land between a
/// seed and the draws of the run it seeded (two runs that must agree to the bit then differ
/// when the machine is busy).
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}
