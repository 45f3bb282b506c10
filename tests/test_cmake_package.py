"""`mcuformer export-cmake`: the CMake package configures and builds with the arm-none-eabi
toolchain file, and its host build runs and gives the reference's logits."""
import contextlib
import fcntl
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from package_fixtures import converted_model, reference_logits
from tflm_fixtures import tflm_root_or_skip

NUM_IMAGES = 10


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, fashion_mnist):
    return converted_model(tmp_path_factory.mktemp("cmake"), fashion_mnist)


@pytest.fixture(scope="module")
def package(model_dir, tmp_path_factory):
    tflm_root_or_skip()
    out = tmp_path_factory.mktemp("pkg") / "FashionViT"
    proc = run_cli("export-cmake", str(model_dir), "--out", str(out), "--name", "FashionViT",
                   "--images", str(NUM_IMAGES))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _sync(src, dst):
    """dst becomes a copy of src; files whose bytes are unchanged keep their mtime (make skips them)."""
    wanted = {p.relative_to(src) for p in src.rglob("*") if p.is_file()}
    for path in [p for p in dst.rglob("*") if p.is_file() and p.relative_to(dst) not in wanted]:
        path.unlink()
    for rel in wanted:
        target = dst / rel
        if not target.is_file() or target.read_bytes() != (src / rel).read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, target)


@contextlib.contextmanager
def _cached_build(package, kind, toolchain=None):
    """The package built in a folder of the project cache kept between runs, so a rerun
    recompiles only what changed (the model, the sample images); yields the build folder."""
    from deploy.tflm import cache_dir

    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed (apt-get install cmake)")
    root = cache_dir() / "cmake-package-test" / kind
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _sync(package, root / "pkg")
        configure = [f"-DCMAKE_TOOLCHAIN_FILE={root / 'pkg' / 'cmake' / toolchain}"] if toolchain else []
        for cmd in (["cmake", "-S", str(root / "pkg"), "-B", str(root / "build"), "-DCMAKE_BUILD_TYPE=MinSizeRel",
                     *configure], ["cmake", "--build", str(root / "build"), "-j2"]):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        yield root / "build"


@pytest.mark.tflm
def test_package_layout(package):
    cmake = (package / "CMakeLists.txt").read_text()
    assert "add_library(mcuformer::model ALIAS mcuformer_model)" in cmake
    assert re.search(r"target_compile_definitions\(mcuformer_model PUBLIC TF_LITE_STATIC_MEMORY", cmake)
    listed = set(re.findall(r"^  (src/\S+\.(?:cpp|c))$", cmake, re.M))
    assert listed == {p.relative_to(package).as_posix() for p in (package / "src").rglob("*")
                      if p.suffix in (".cpp", ".c")}
    toolchain = (package / "cmake" / "arm-none-eabi-cortex-m7.cmake").read_text()
    assert "-mcpu=cortex-m7 -mfpu=fpv5-sp-d16 -mfloat-abi=hard" in toolchain
    readme = (package / "README.md").read_text()
    assert "-fshort-enums" in readme and "float ABI" in readme


@pytest.mark.tflm
def test_builds_with_the_arm_toolchain_file(package):
    if shutil.which("arm-none-eabi-g++") is None:
        pytest.skip("arm-none-eabi-g++ not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    with _cached_build(package, "cortex-m7", toolchain="arm-none-eabi-cortex-m7.cmake") as build:
        archive = build / "libmcuformer_model.a"
        assert archive.is_file() and not (build / "mcuformer_classify").exists()     # no host example
        attributes = subprocess.run(["arm-none-eabi-readelf", "-A", str(archive)], capture_output=True,
                                    text=True).stdout
        cache = (build / "CMakeCache.txt").read_text()
    assert "Tag_CPU_arch: v7E-M" in attributes and "Tag_ABI_VFP_args: VFP registers" in attributes
    assert "MCUFORMER_CMSIS_NN:BOOL=ON" in cache


@pytest.mark.tflm
def test_host_build_gives_the_reference_logits(package, model_dir, fashion_mnist):

    with _cached_build(package, "host") as build:
        proc = subprocess.run([str(build / "mcuformer_classify")], capture_output=True, text=True, timeout=120)
        cache = (build / "CMakeCache.txt").read_text()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "MCUFORMER_CMSIS_NN:BOOL=OFF" in cache
    rows = re.findall(r"^image (\d+) label (\d+) expected (\d+) scores((?: -?\d+)+)$", proc.stdout, re.M)
    assert [int(r[0]) for r in rows] == list(range(NUM_IMAGES))
    reference = reference_logits(model_dir, fashion_mnist, NUM_IMAGES)
    assert np.array_equal(np.array([[int(v) for v in r[3].split()] for r in rows]), reference)
    assert [int(r[1]) for r in rows] == reference.argmax(axis=1).tolist()
    assert [int(r[2]) for r in rows] == fashion_mnist.y_test[:NUM_IMAGES].tolist()


def test_cli_error_is_one_line(tmp_path):
    proc = run_cli("export-cmake", str(tmp_path / "nope"), "--out", str(tmp_path / "pkg"))
    assert_one_line_error(proc, "mcuformer convert")
