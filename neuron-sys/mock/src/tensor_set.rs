//! Tensor sets: the name -> tensor containers passed to `nrt_execute`.
//!
//! This module owns [`TensorSet`], the object behind an `nrt_tensor_set_t*`. A set does not
//! own its tensors: it records each tensor's handle address under the caller's key (raw bytes
//! of the C string), and execution resolves the address through the runtime's handle
//! registry, so a tensor freed while still in a set is detected instead of dereferenced.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::counters::{self, COUNTERS};
use crate::state::lock;

/// The object behind an `nrt_tensor_set_t*`.
#[derive(Debug)]
pub(crate) struct TensorSet {
    entries: Mutex<HashMap<Vec<u8>, usize>>,
}

impl TensorSet {
    pub(crate) fn new() -> Self {
        counters::add(&COUNTERS.live_tensor_sets, 1);
        TensorSet {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Adds `tensor` (a handle address) under `name`, replacing any entry of that name.
    pub(crate) fn add(&self, name: &[u8], tensor: usize) {
        lock(&self.entries).insert(name.to_vec(), tensor);
    }

    /// The handle address stored under `name`.
    pub(crate) fn get(&self, name: &[u8]) -> Option<usize> {
        lock(&self.entries).get(name).copied()
    }
}

impl Drop for TensorSet {
    fn drop(&mut self) {
        counters::dec(&COUNTERS.live_tensor_sets);
    }
}
