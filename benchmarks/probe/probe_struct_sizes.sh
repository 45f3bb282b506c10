#!/bin/sh
# Print TFLM struct sizes for the x86_64 host (pointer 8) and Cortex-M7 (pointer 4) builds.
# Usage: benchmarks/probe/probe_struct_sizes.sh TFLM_ROOT   (a TFLM tree with its downloads)
set -e
T=${1:?usage: $0 TFLM_ROOT}
D=$(dirname "$0")
INC="-I$T -I$T/tensorflow/lite/micro/tools/make/downloads/flatbuffers/include -I$T/tensorflow/lite/micro/tools/make/downloads/gemmlowp"
FLAGS="-std=c++17 -DTF_LITE_STATIC_MEMORY $INC"
OUT=$(mktemp -d)
g++ $FLAGS -DHOST_MAIN "$D/tflm_struct_sizes.cc" -o "$OUT/host"
echo "# pointer 8 (x86_64 g++)"; "$OUT/host"
"$OUT/host" > "$OUT/host.txt"
arm-none-eabi-g++ $FLAGS -mcpu=cortex-m7 -mthumb -c "$D/tflm_struct_sizes.cc" -o "$OUT/m7.o"
arm-none-eabi-objcopy -O binary -j .rodata "$OUT/m7.o" "$OUT/m7.bin"
echo "# pointer 4 (arm-none-eabi-g++ -mcpu=cortex-m7)"
python3 - "$OUT/m7.bin" "$OUT/host.txt" <<'PY'
import struct, sys
words = struct.unpack("<%dI" % (len(open(sys.argv[1], "rb").read()) // 4), open(sys.argv[1], "rb").read())
values = words[words.index(0x5123E001) + 1:words.index(0x5123E002)]
for k, line in enumerate(open(sys.argv[2])):
    print(line.split()[0], values[2 * k], values[2 * k + 1])
PY
rm -rf "$OUT"
