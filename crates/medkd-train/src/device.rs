use burn::prelude::*;

use crate::TrainError;
use crate::config::DeviceChoice;

/// The compute device a config asks for; GPU backends exist only when built with their feature.
pub fn make_device(choice: DeviceChoice) -> Result<Device, TrainError> {
    match choice {
        DeviceChoice::Flex => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda => Ok(Device::cuda(0)),
        #[cfg(feature = "wgpu")]
        DeviceChoice::Wgpu => Ok(Device::wgpu(Default::default())),
        #[allow(unreachable_patterns)]
        other => Err(TrainError::DeviceNotBuilt(format!("{other:?}").to_lowercase())),
    }
}
