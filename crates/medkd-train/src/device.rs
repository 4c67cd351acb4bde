use burn::prelude::*;

use crate::TrainError;
use crate::config::DeviceChoice;

/// The compute device a config asks for; backends other than `flex` exist only when built with
/// their feature.
pub fn make_device(choice: DeviceChoice) -> Result<Device, TrainError> {
    match choice {
        DeviceChoice::Flex => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda => Ok(Device::cuda(0)),
        #[cfg(feature = "wgpu")]
        DeviceChoice::Wgpu => Ok(Device::wgpu(Default::default())),
        // burn 0.22 deprecates burn-tch; it stays medkd's optional LibTorch backend (issue #5).
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        DeviceChoice::Libtorch => Ok(Device::libtorch()),
        #[allow(unreachable_patterns)]
        other => Err(TrainError::DeviceNotBuilt { device: format!("{other:?}").to_lowercase(), feature: other.cargo_feature() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_not_built_in_names_the_feature_that_builds_it() {
        assert!(make_device(DeviceChoice::Flex).is_ok());
        #[cfg(not(feature = "tch"))]
        assert_eq!(
            make_device(DeviceChoice::Libtorch).unwrap_err().to_string(),
            "device 'libtorch' is not built into this binary; rebuild with `--features tch`"
        );
        #[cfg(not(feature = "cuda"))]
        assert_eq!(
            make_device(DeviceChoice::Cuda).unwrap_err().to_string(),
            "device 'cuda' is not built into this binary; rebuild with `--features cuda`"
        );
    }
}
