//! Weights in torchvision's state-dict naming: load from .safetensors or PyTorch .pth/.pt, save
//! to .safetensors.
//!
//! burn-store does the format work: `PytorchStore` parses pickle without executing it,
//! `BurnToPyTorchAdapter`/`PyTorchToBurnAdapter` rename BatchNorm gamma/beta ↔ weight/bias and
//! transpose Linear weights, and a `KeyRemapper` built from each architecture's rules maps burn
//! module paths to torchvision names. Strictness is checked here, against the model's expected
//! torchvision names and shapes, before anything is applied.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write};
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{
    BurnToPyTorchAdapter, FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore,
};
use burn::tensor::{Bytes, DType};
use burn::tensor::{Device, Tensor};

use medkd_onnx::Weight;

use crate::error::{ModelError, ShapeMismatch};
use crate::model::Model;
use crate::vit;

/// BatchNorm's step counter: in every torchvision state dict, unused here.
const NUM_BATCHES_TRACKED: &str = ".num_batches_tracked";
/// Checkpoint entries that may hold the state dict, tried in order.
const CHECKPOINT_KEYS: [&str; 2] = ["state_dict.", "model."];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Safetensors,
    Pytorch,
}

impl Format {
    fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "safetensors" => Some(Format::Safetensors),
            "pth" | "pt" => Some(Format::Pytorch),
            _ => None,
        }
    }
}

/// Loads a torchvision-named state dict (.safetensors, or .pth/.pt read without executing pickle
/// code), bare or nested under `"state_dict"`/`"model"`. Strict: missing, unexpected and
/// mis-shaped tensors are all reported in one [`ModelError::Mismatch`]; `num_batches_tracked`
/// is ignored. An RGB checkpoint loads into a one-channel model with its first conv summed over
/// the colour channels (see `adapt_input_conv`), and a ViT checkpoint made for another patch grid
/// gets its position embeddings resampled to the model's (see `adapt_pos_embed`).
pub fn load_weights(model: Model, path: &Path) -> Result<Model, ModelError> {
    // Every parameter is overwritten from the file (a missing one is an error), so none needs the
    // random draw burn makes when `expected_tensors` lists them: a ResNet-18's took 0.16 s of the
    // README demo's final evaluation, and is paid by every `eval`, `predict` and loaded teacher.
    load_weights_partial(model.map(&mut UndrawnAsZeros), path, &[])
}

/// Gives every parameter not yet initialized a zero initializer instead of its random one.
struct UndrawnAsZeros;

impl ModuleMapper for UndrawnAsZeros {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if param.is_initialized() {
            return param;
        }
        let (shape, device) = (param.lazy_shape(), param.lazy_device());
        let zeros_shape = shape.clone();
        let zeros = move |device: &Device, require_grad: bool| Tensor::zeros(zeros_shape, device).set_require_grad(require_grad);
        // medkd's parameters are all created trainable (burn's `Initializer::init`).
        Param::uninitialized(param.id, zeros, device, true, shape)
    }
}

/// [`load_weights`], except that tensors whose torchvision name starts with one of
/// `skip_prefixes` are neither loaded nor required: they keep the model's values. E.g. ImageNet
/// weights under a new head: `&["fc."]` (ResNet) or `&["classifier."]`.
pub fn load_weights_partial(mut model: Model, path: &Path, skip_prefixes: &[&str]) -> Result<Model, ModelError> {
    let skipped = |name: &str| skip_prefixes.iter().any(|prefix| name.starts_with(prefix));
    let expected = expected_tensors(&model);

    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    let (mut unexpected, mut mismatched) = (Vec::new(), Vec::new());
    for mut tensor in read_state_dict(path)? {
        if tensor.name.ends_with(NUM_BATCHES_TRACKED) || skipped(&tensor.name) {
            continue;
        }
        let Some(want) = expected.get(&tensor.name) else {
            unexpected.push(tensor.name);
            continue;
        };
        seen.insert(tensor.name.clone());
        let adapt_error = |message| ModelError::Read { path: path.to_owned(), message };
        if tensor.name == model.input_conv() {
            tensor = adapt_input_conv(tensor, &want.shape).map_err(adapt_error)?;
        }
        if let (Model::Vit(vit), vit::POS_EMBED) = (&model, tensor.name.as_str()) {
            tensor = adapt_pos_embed(tensor, &want.shape, vit.grid()).map_err(adapt_error)?;
        }
        if tensor.shape.as_slice() != want.shape {
            mismatched.push(ShapeMismatch { name: tensor.name, expected: want.shape.clone(), found: tensor.shape.to_vec() });
            continue;
        }
        tensor.name = want.path.clone();
        found.push(tensor);
    }
    let missing: Vec<String> = expected.keys().filter(|name| !skipped(name) && !seen.contains(*name)).cloned().collect();
    if !(missing.is_empty() && unexpected.is_empty() && mismatched.is_empty()) {
        return Err(ModelError::Mismatch { path: path.to_owned(), missing, unexpected, mismatched });
    }

    // Every parameter shares one dtype; a checkpoint in another precision is cast to it.
    let dtype = expected.values().next().map_or(DType::F32, |want| want.dtype);
    let adapter = PyTorchToBurnAdapter.chain(FloatCastAdapter::to(dtype));
    let result = model.apply(found, None, Some(Box::new(adapter)), true);
    // Skipped tensors show up as `missing` in `result`. Errors left are data problems
    // (unreadable bytes, a non-float dtype); unused tensors would mean the checks above and
    // burn-store disagree.
    if !result.errors.is_empty() || !result.unused.is_empty() {
        return Err(ModelError::Read { path: path.to_owned(), message: result.to_string() });
    }
    Ok(model)
}

/// An RGB checkpoint's first conv for a one-channel model: the kernel summed over its three input
/// channels (timm's `adapt_input_conv`), so a gray image gives what the RGB kernel gives on the
/// same image in all three channels. Any other tensor, or shape, is returned as it is.
fn adapt_input_conv(tensor: PackTensor, expected: &[usize]) -> Result<PackTensor, String> {
    let shape = tensor.shape.to_vec();
    let rgb_to_gray = shape.len() == 4
        && shape[1] == 3
        && expected.len() == 4
        && expected[1] == 1
        && expected[0] == shape[0]
        && expected[2..] == shape[2..];
    if !rgb_to_gray {
        return Ok(tensor);
    }
    if tensor.dtype != DType::F32 {
        return Err(format!("`{}` is {:?}; only float32 stems are summed for one-channel input", tensor.name, tensor.dtype));
    }
    let (name, _, _, _, bytes) = tensor.into_parts().map_err(|e| e.to_string())?;
    let values = f32_values(&bytes);
    let plane = shape[2] * shape[3];
    let summed: Vec<u8> = values
        .chunks_exact(3 * plane)
        .flat_map(|filter| (0..plane).map(move |i| filter[i] + filter[plane + i] + filter[2 * plane + i]))
        .flat_map(f32::to_le_bytes)
        .collect();
    Ok(PackTensor::new(name, DType::F32, expected.to_vec(), None, Bytes::from_bytes_vec(summed)))
}

/// A ViT checkpoint's `pos_embed` for a model with another patch `grid` (timm's checkpoint
/// filter: a model at 64 px loads weights trained at 224): the grid resampled as timm does, the
/// CLS entry kept. A tensor of the model's shape, or one whose grid is not a square (which timm
/// cannot infer either), is returned as it is and any mismatch reported as usual.
fn adapt_pos_embed(tensor: PackTensor, expected: &[usize], grid: [usize; 2]) -> Result<PackTensor, String> {
    let shape = tensor.shape.to_vec();
    if shape == expected || shape.len() != 3 || expected.len() != 3 || shape[0] != 1 || shape[2] != expected[2] || shape[1] < 2 {
        return Ok(tensor);
    }
    if tensor.dtype != DType::F32 {
        return Err(format!("`{}` is {:?}; only float32 position embeddings are resampled", tensor.name, tensor.dtype));
    }
    let (tokens, dim) = (shape[1], shape[2]);
    let (name, _, _, _, bytes) = tensor.into_parts().map_err(|e| e.to_string())?;
    let values = f32_values(&bytes);
    match vit::resample_pos_embed(&values, tokens, dim, grid) {
        Some(resampled) => {
            let bytes: Vec<u8> = resampled.into_iter().flat_map(f32::to_le_bytes).collect();
            Ok(PackTensor::new(name, DType::F32, expected.to_vec(), None, Bytes::from_bytes_vec(bytes)))
        }
        None => Ok(PackTensor::new(name, DType::F32, shape, None, bytes)),
    }
}

/// Writes the model as a .safetensors file with torchvision names and shapes (no
/// `num_batches_tracked`), so PyTorch can `load_state_dict(..., strict=False)` it.
///
/// Atomic: the file is written as a temporary sibling of `path` and renamed over `path` only once
/// complete, so an interrupted save never leaves a truncated file.
pub fn save_weights(model: &Model, path: &Path) -> Result<(), ModelError> {
    save_weights_with_metadata(model, path, &[])
}

/// [`save_weights`] with `metadata` in the file's header (string pairs, as safetensors keeps them).
pub fn save_weights_with_metadata(model: &Model, path: &Path, metadata: &[(String, String)]) -> Result<(), ModelError> {
    if Format::of(path) != Some(Format::Safetensors) {
        return Err(ModelError::UnsupportedFormat { path: path.to_owned(), expected: "a .safetensors extension" });
    }
    let failed = |e: std::io::Error| ModelError::Write { path: path.to_owned(), message: e.to_string() };
    let folder = path.parent().filter(|folder| !folder.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = BufWriter::new(tempfile::NamedTempFile::new_in(folder).map_err(failed)?);
    write_safetensors(model, metadata, &mut file, path)?;
    let file = file.into_inner().map_err(|e| failed(e.into_error()))?;
    file.persist(path).map_err(|e| failed(e.error))?;
    Ok(())
}

/// Writes `model` to `out` as [`save_weights_with_metadata`] saves it (`path` names the
/// destination in errors): tensors in name order, one at a time, after a header whose keys are
/// all sorted. Written here rather than by burn-store, which builds the whole file in memory
/// (those copies, and clearing the fresh pages they take, were a twentieth of the README demo's
/// CPU time), or by the safetensors crate, whose header orders `__metadata__` from a HashMap, so
/// that the same weights made different files.
pub fn write_safetensors(model: &Model, metadata: &[(String, String)], out: &mut impl Write, path: &Path) -> Result<(), ModelError> {
    let failed = |message: String| ModelError::Write { path: path.to_owned(), message };
    // valid() first: a BatchNorm's running statistics from the last training forward are held
    // pending until a sync, and burn-store's visit reads the synced value (one step stale).
    let model = model.valid();
    let tensors = model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let (renamed, names) = torchvision_names(&model).remap(tensors);
    let tensors: BTreeMap<String, _> = names.into_iter().map(|(name, _)| name).zip(renamed).collect();
    let mut fields = serde_json::Map::new();
    for (key, value) in [("format", "safetensors"), ("producer", "medkd"), ("version", env!("CARGO_PKG_VERSION"))] {
        fields.insert(key.into(), value.into());
    }
    fields.extend(metadata.iter().map(|(key, value)| (key.clone(), value.as_str().into())));
    // serde_json's maps are ordered by key.
    let mut header = serde_json::Map::from_iter([("__metadata__".to_string(), serde_json::Value::Object(fields))]);
    let mut offset = 0;
    for (name, tensor) in &tensors {
        if tensor.dtype != DType::F32 {
            return Err(failed(format!("`{name}` is {:?}; weights are saved as float32", tensor.dtype)));
        }
        let end = offset + tensor.shape.iter().product::<usize>() * size_of::<f32>();
        header.insert(name.clone(), serde_json::json!({ "dtype": "F32", "shape": tensor.shape.to_vec(), "data_offsets": [offset, end] }));
        offset = end;
    }
    let mut header = serde_json::to_vec(&header).expect("a JSON map serializes");
    // Padded with spaces to a multiple of 8 bytes, as the safetensors crate pads it.
    header.resize(header.len().next_multiple_of(8), b' ');
    let io = |e: std::io::Error| failed(e.to_string());
    out.write_all(&(header.len() as u64).to_le_bytes()).and_then(|_| out.write_all(&header)).map_err(io)?;
    for (name, tensor) in tensors {
        out.write_all(&tensor.to_bytes().map_err(|e| failed(format!("`{name}`: {e}")))?).map_err(io)?;
    }
    Ok(())
}

/// The model's tensors under their torchvision names and in PyTorch's layouts (Linear weights
/// `[out, in]`), as [`save_weights`] writes them: what an export reads.
pub fn state_dict(model: &Model) -> Result<BTreeMap<String, Weight>, ModelError> {
    let model = model.valid();
    let tensors = model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let (renamed, names) = torchvision_names(&model).remap(tensors);
    let read = |message: String| ModelError::Read { path: "the model in memory".into(), message };
    renamed
        .into_iter()
        .zip(names)
        .map(|(tensor, (name, _))| {
            if tensor.dtype != DType::F32 {
                return Err(read(format!("`{name}` is {:?}; exports read float32 weights", tensor.dtype)));
            }
            let bytes = tensor.to_bytes().map_err(|e| read(e.to_string()))?;
            Ok((name, Weight { shape: tensor.shape.to_vec(), values: f32_values(&bytes) }))
        })
        .collect()
}

/// Little-endian float32 bytes as values.
fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn torchvision_names(model: &Model) -> KeyRemapper {
    KeyRemapper::from_patterns(model.torchvision_keys()).expect("the architectures' torchvision key rules are valid regexes")
}

/// A model tensor as a torchvision state dict holds it.
struct Expected {
    /// Where burn-store's applier looks the tensor up (burn path, enum variants skipped,
    /// BatchNorm gamma/beta as weight/bias).
    path: String,
    /// PyTorch layout (Linear weights `[out, in]`).
    shape: Vec<usize>,
    dtype: DType,
}

/// torchvision name → expected tensor, for every parameter and buffer of `model`.
fn expected_tensors(model: &Model) -> BTreeMap<String, Expected> {
    let tensors = model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let (renamed, names) = torchvision_names(model).remap(tensors);
    renamed
        .into_iter()
        .zip(names)
        .map(|(tensor, (torchvision, path))| {
            let expected = Expected { path, shape: tensor.shape.to_vec(), dtype: tensor.dtype };
            (torchvision, expected)
        })
        .collect()
}

/// The tensors of a weights file under their stored names, with a checkpoint's wrapper prefix
/// removed. Data is read lazily, when applied.
fn read_state_dict(path: &Path) -> Result<Vec<PackTensor>, ModelError> {
    let read_error = |message: String| ModelError::Read { path: path.to_owned(), message };
    let tensors: Vec<PackTensor> = match Format::of(path) {
        Some(Format::Safetensors) => {
            SafetensorsStore::from_file(path).get_all_tensors().map_err(|e| read_error(e.to_string()))?.values().cloned().collect()
        }
        Some(Format::Pytorch) => PytorchStore::from_file(path)
            // Names are used as stored: renumbering index gaps would turn MobileNetV2's
            // `classifier.1.weight` into `classifier.0.weight`.
            .map_indices_contiguous(false)
            .get_all_tensors()
            .map_err(|e| read_error(e.to_string()))?
            .values()
            .cloned()
            .collect(),
        None => {
            return Err(ModelError::UnsupportedFormat { path: path.to_owned(), expected: "a .safetensors, .pth or .pt extension" });
        }
    };
    Ok(unwrap_checkpoint(tensors))
}

/// Training checkpoints nest the state dict (`{"state_dict": ..., "optimizer": ...}`), which the
/// readers flatten to `state_dict.conv1.weight`, ...; no torchvision name starts with these keys.
fn unwrap_checkpoint(tensors: Vec<PackTensor>) -> Vec<PackTensor> {
    let Some(prefix) = CHECKPOINT_KEYS.into_iter().find(|prefix| tensors.iter().any(|tensor| tensor.name.starts_with(prefix))) else {
        return tensors;
    };
    tensors
        .into_iter()
        .filter_map(|mut tensor| {
            let name = tensor.name.strip_prefix(prefix)?.to_owned();
            tensor.name = name;
            Some(tensor)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Arch, ModelSpec};

    #[test]
    fn written_files_are_what_burn_store_writes_with_their_header_sorted() {
        // burn-store's own writer as the reference: the same tensors, names, layouts, offsets and
        // bytes; only the order of its header's keys (a HashMap's) differs, so it is sorted here.
        let spec = ModelSpec { small_input: true, ..ModelSpec::new(Arch::MobileNetV2, 3) };
        let model = Model::new(&spec, &crate::test_device()).unwrap();
        let metadata = [("medkd".to_string(), "test".to_string()), ("arch".to_string(), "mobilenet_v2".to_string())];
        let mut store = SafetensorsStore::from_bytes(None)
            .with_to_adapter(BurnToPyTorchAdapter)
            .skip_enum_variants(true)
            .remap(torchvision_names(&model))
            .metadata("producer", "medkd")
            .metadata("version", env!("CARGO_PKG_VERSION"));
        for (key, value) in &metadata {
            store = store.metadata(key.clone(), value.clone());
        }
        model.valid().save_into(&mut store).unwrap();
        let reference = store.get_bytes().unwrap();
        let length = u64::from_le_bytes(*reference.first_chunk::<8>().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&reference[8..8 + length]).unwrap();
        let mut sorted = serde_json::to_vec(&header).unwrap();
        sorted.resize(sorted.len().next_multiple_of(8), b' ');
        let expected = [&(sorted.len() as u64).to_le_bytes()[..], &sorted, &reference[8 + length..]].concat();

        let mut written = Vec::new();
        write_safetensors(&model, &metadata, &mut written, Path::new("model.safetensors")).unwrap();
        assert_eq!(written.len(), expected.len());
        assert!(written == expected, "the files differ");
    }
}
