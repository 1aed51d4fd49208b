//! Safe layer over neuron-sys (issue 3 fills this in).
