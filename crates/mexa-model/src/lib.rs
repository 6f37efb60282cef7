//! Model runtime on libtorch (through tch): loads Hugging Face model folders and GGUF files,
//! tokenizes, and returns every layer's hidden states pooled into sentence embeddings.
pub mod device;
pub use device::{parse_device, runtime_info};
