//! x86-64 fast paths, one module per instruction set.

pub(crate) mod avx2;
