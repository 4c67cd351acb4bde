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

/// The `count` devices a data-parallel run trains on: [`make_device`]'s for one; for several,
/// GPUs 0..count of `choice`'s kind (discrete GPUs for wgpu), or the one CPU `count` times, which
/// trains no faster but runs the same sharded steps (how the tests check them).
pub fn make_devices(choice: DeviceChoice, count: usize) -> Result<Vec<Device>, TrainError> {
    match choice {
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda if count > 1 => Ok((0..count).map(Device::cuda).collect()),
        #[cfg(feature = "wgpu")]
        DeviceChoice::Wgpu if count > 1 => Ok((0..count).map(|i| Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i))).collect()),
        _ => Ok(vec![make_device(choice)?; count.max(1)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_not_built_in_names_the_feature_that_builds_it() {
        assert!(make_device(DeviceChoice::Flex).is_ok());
        assert_eq!(make_devices(DeviceChoice::Flex, 3).unwrap(), vec![Device::flex(); 3]);
        #[cfg(not(feature = "cuda"))]
        assert!(make_devices(DeviceChoice::Cuda, 2).unwrap_err().to_string().contains("--features cuda"));
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
