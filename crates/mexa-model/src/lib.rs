//! Model runtime on libtorch (through tch): loads Hugging Face model folders (config.json,
//! safetensors, tokenizer.json) and GGUF files (dequantised), and returns every layer's
//! hidden states pooled into sentence embeddings.
//!
//! One file per architecture family, each with its config struct and forward:
//! [`llama`] (Llama 1–3.2, Mistral, SmolLM, Qwen2/3, Phi-3), [`olmo`] (OLMo, OLMo 2), [`gemma`]
//! (Gemma 1, 2, 3, EmbeddingGemma), [`bloom`] (BLOOM), [`xglm`] (XGLM), [`cohere`] (Command-R, Aya),
//! [`bert`] (BERT, XLM-R). Shared pieces are in [`layers`]; [`model::Model::load`] picks the family.
pub mod bert;
pub mod bloom;
pub mod cohere;
mod config_check;
pub mod device;
pub mod embed;
pub mod gemma;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod layers;
pub mod llama;
pub mod model;
pub mod olmo;
pub mod score;
pub mod tokenizer;
pub mod weights;
pub mod xglm;

pub use device::{parse_device, return_free_memory, runtime_info, tune_allocator};
pub use embed::{embed, embed_ids, encode_all, BatchOptions, LensTop1, Pooled, Pooling};
pub use model::{
    load_network, load_tokenizer, parse_dtype, resident_bytes, weight_bytes, DType, HiddenStates, LoadOptions, Model,
};
pub use score::{encode_request, score, IdRequest, ScoreOptions, Scored};
pub use tokenizer::{BosPolicy, TextTokenizer};
