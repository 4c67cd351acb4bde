//! Shared by the integration tests: the torchvision golden file and the weight formula of
//! tools/golden/torchvision_logits.py, reproduced bit for bit.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, tensor::TensorView};
use serde_json::Value;

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

pub fn golden() -> Value {
    let text = std::fs::read_to_string(golden_dir().join("torchvision_logits.json"))
        .expect("golden file; regenerate with tools/golden/torchvision_logits.py");
    serde_json::from_str(&text).expect("golden JSON")
}

/// The EfficientNet-Lite golden file (tools/golden/efficientnet_lite_logits.py).
pub fn efficientnet_golden() -> Value {
    let text = std::fs::read_to_string(golden_dir().join("efficientnet_lite.json"))
        .expect("golden file; regenerate with tools/golden/efficientnet_lite_logits.py");
    serde_json::from_str(&text).expect("golden JSON")
}

/// `architectures[arch]` (parameter count, MACs and stage shapes) from the golden file that
/// holds `arch`: torchvision's, or the EfficientNet-Lite reference's.
pub fn architecture_golden(arch: &str) -> Value {
    let torchvision = golden()["architectures"][arch].clone();
    if torchvision.is_null() { efficientnet_golden()["architectures"][arch].clone() } else { torchvision }
}

pub fn usizes(value: &Value) -> Vec<usize> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
}

pub fn floats(value: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    flatten_floats(value, &mut out);
    out
}

fn flatten_floats(value: &Value, out: &mut Vec<f32>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten_floats(item, out)),
        other => out.push(other.as_f64().unwrap() as f32),
    }
}

/// `(name, shape)` pairs of a state-dict list in the golden file.
pub fn state_dict_entries(list: &Value) -> Vec<(String, Vec<usize>)> {
    list.as_array().unwrap().iter().map(|entry| (entry[0].as_str().unwrap().to_owned(), usizes(&entry[1]))).collect()
}

/// u in [-1, 1) from splitmix64((k << 32) + i).
pub fn splitmix_uniform(k: u64, i: u64) -> f64 {
    let mut z = ((k << 32) + i).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 * (1.0 / (1u64 << 52) as f64) - 1.0
}

/// The k-th state-dict tensor of the formula (see the Python script's docstring).
pub fn formula_tensor(name: &str, shape: &[usize], k: usize) -> Vec<f32> {
    let count: usize = shape.iter().product();
    let fan_in: usize = shape.iter().skip(1).product();
    (0..count as u64)
        .map(|i| {
            let u = splitmix_uniform(k as u64, i);
            let value = if name.ends_with("running_mean") {
                0.1 * u
            } else if name.ends_with("running_var") {
                1.0 + 0.5 * u.abs()
            } else if shape.len() == 4 {
                (6.0 / fan_in as f64).sqrt() * u
            } else if shape.len() == 2 {
                (1.0 / (fan_in as f64).sqrt()) * u
            } else if name.ends_with("weight") {
                1.0 + 0.1 * u
            } else {
                0.05 * u
            };
            value as f32
        })
        .collect()
}

/// Writes the formula state dict of a golden `state_dict` list to `path` (names as listed) and
/// returns its entries.
pub fn write_formula_weights(path: &Path, state_dict: &Value) -> Vec<Entry> {
    let entries: Vec<Entry> = state_dict_entries(state_dict)
        .into_iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let values = formula_tensor(&name, &shape, k);
            Entry { name, shape, values }
        })
        .collect();
    write_safetensors(path, &entries);
    entries
}

/// x[b,c,h,w] = sin((0.11 + 0.05 b) h (c+1) + (0.23 - 0.07 b) w + 0.5 c).
pub fn formula_input(batch: usize, size: usize, device: &Device) -> Tensor<4> {
    let mut values = Vec::with_capacity(batch * 3 * size * size);
    for b in 0..batch {
        for c in 0..3 {
            for h in 0..size {
                for w in 0..size {
                    let (b, c, h, w) = (b as f64, c as f64, h as f64, w as f64);
                    let arg = (0.11 + 0.05 * b) * h * (c + 1.0) + (0.23 - 0.07 * b) * w + 0.5 * c;
                    values.push(arg.sin() as f32);
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [batch, 3, size, size]), device)
}

/// An f32 tensor for [`write_safetensors`].
#[derive(Clone)]
pub struct Entry {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl Entry {
    /// Zeros of `shape`.
    pub fn new(name: &str, shape: Vec<usize>) -> Self {
        let values = vec![0.0; shape.iter().product()];
        Self { name: name.to_owned(), shape, values }
    }
}

pub fn write_safetensors(path: &Path, entries: &[Entry]) {
    let bytes: Vec<Vec<u8>> = entries.iter().map(|e| e.values.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views: Vec<(String, TensorView<'_>)> =
        entries.iter().zip(&bytes).map(|(e, data)| (e.name.clone(), TensorView::new(Dtype::F32, e.shape.clone(), data).unwrap())).collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Every tensor of a safetensors file as f32 entries, sorted by name.
pub fn read_safetensors(path: &Path) -> Vec<Entry> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut entries: Vec<Entry> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), Dtype::F32, "{name}");
            let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            Entry { name, shape: view.shape().to_vec(), values }
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

pub fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_into_vec::<f32>().unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `weights` (an RGB checkpoint) loaded into `rgb_spec` and into the same spec with one input
/// channel: the gray model on an image gives the RGB model's logits on that image repeated in
/// three channels (the stem or patch projection summed over the colours).
pub fn assert_gray_loads_as_rgb(rgb_spec: &medkd_models::ModelSpec, weights: &Path, size: usize) {
    use burn::module::Module;
    use medkd_models::{Model, ModelSpec, load_weights};
    let device = medkd_models::test_device();
    let load = |spec: &ModelSpec| load_weights(Model::new(spec, &device).unwrap(), weights).unwrap().valid();
    let (rgb, gray) = (load(rgb_spec), load(&ModelSpec { in_channels: 1, ..rgb_spec.clone() }));
    let image = formula_input(2, size, &device).narrow(1, 0, 1);
    let diff = max_abs_diff(&to_vec(gray.logits(image.clone())), &to_vec(rgb.logits(image.repeat_dim(1, 3))));
    assert!(diff < 1e-4, "gray logits differ from RGB-repeated ones by {diff}");
}
