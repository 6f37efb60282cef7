//! Dequantisers against gguf-py (llama.cpp's NumPy reference), on random blocks written by
//! tools/make_dequant_fixture.py.
use mexa_model::gguf::{dequantize, GgmlType};

#[test]
fn every_type_matches_gguf_py() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/gguf/dequant.json");
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 11);
    for c in cases {
        let name = c["type"].as_str().unwrap();
        let ty = GgmlType::from_id(c["ggml_type"].as_u64().unwrap() as u32).unwrap();
        let hex = c["hex"].as_str().unwrap();
        let raw: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let expected: Vec<f32> = c["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let got = dequantize(ty, &raw, expected.len()).unwrap();
        let mut worst = 0f32;
        for (g, e) in got.iter().zip(&expected) {
            // gguf-py computes in f32 with a different operation order for the K-quants.
            worst = worst.max((g - e).abs() / e.abs().max(1e-3));
        }
        assert!(worst < 1e-5, "{name}: worst relative error {worst}");
    }
}

#[test]
fn wrong_sizes_are_errors() {
    assert!(dequantize(GgmlType::Q4_0, &[0u8; 17], 32).is_err());
    assert!(dequantize(GgmlType::Q6K, &[0u8; 210], 255).is_err());
}
