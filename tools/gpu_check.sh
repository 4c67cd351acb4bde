#!/usr/bin/env bash
# The GPU check of issue #31, for a session lent a GPU machine (the device tool: no Rust
# toolchain there, no network, 15 minutes of device time in all), so everything is built here.
#
# Here, once (the vulkan build needs no download; 43 min from scratch on 2 cores):
#   cargo build --release --locked -p medkd --features vulkan --target-dir target-vulkan
#   mkdir -p .gpu && strip -o .gpu/medkd target-vulkan/release/medkd   # must stay under 64 MiB with .gl
#   echo /.gpu/ >> .git/info/exclude
#   and the Vulkan loader debs in .gl, as the device tool's README says (`apt-get download libvulkan1 ...`).
# Then one call: run(command="bash tools/gpu_check.sh", carry=[".gpu", ".gl"], timeout_s=540).
#
# On the GPU machine it writes to $OUT: the driver's view (nvidia-smi, vulkaninfo's summary when
# present), the README demo trained on the GPU and on the CPU by the same binary (summary.json
# each: metrics differ in the last digits, not more), and `medkd bench --device wgpu` rows for the
# CNN, ViT and DINO workloads (medkd alone: the PyTorch reference runs on the CPU); with two GPUs
# or more, the demo trained data-parallel on two.
set -uo pipefail
out=${OUT:?run through the device tool, which sets OUT}
medkd=.gpu/medkd
for deb in .gl/*.deb; do dpkg -x "$deb" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
command -v vulkaninfo > /dev/null && vulkaninfo --summary > "$out/vulkaninfo.txt" 2>&1

# step NAME COMMAND...: runs one step with its log in $OUT, going on after a failure.
step() {
    local name=$1
    shift
    echo "== $name"
    if "$@" > "$out/$name.log" 2>&1; then echo "ok"; else echo "FAILED (exit $?), see $name.log"; tail -n 5 "$out/$name.log"; fi
}

step demo_gpu "$medkd" train --quiet --config configs/demo/breastmnist.toml --set device=wgpu --out /tmp/demo_gpu
step demo_cpu "$medkd" train --quiet --config configs/demo/breastmnist.toml --out /tmp/demo_cpu
cp /tmp/demo_gpu/summary.json "$out/demo_gpu_summary.json" 2> /dev/null
cp /tmp/demo_cpu/summary.json "$out/demo_cpu_summary.json" 2> /dev/null
step bench "$medkd" bench --device wgpu --skip-pytorch --iters 5 --warmup 2 --out "$out/bench_gpu.json" \
    --workloads train_64,train_224,infer_224,mobilenetv2_train_64,vit_tiny_patch4_train_28,vit_tiny_patch8_train_64,vit_tiny_patch8_infer_64,dino_vit_tiny_patch4_28

# Data parallel, on a machine with two GPUs or more: the demo on GPUs 0 and 1 (its summary beside
# the one-GPU demo's: close, not equal, as ResNet-18's BatchNorm sees half batches).
if [ "$(nvidia-smi --list-gpus 2> /dev/null | wc -l)" -ge 2 ]; then
    step demo_2gpu "$medkd" train --quiet --config configs/demo/breastmnist.toml --set device=wgpu --set devices=2 --out /tmp/demo_2gpu
    cp /tmp/demo_2gpu/summary.json "$out/demo_2gpu_summary.json" 2> /dev/null
fi
