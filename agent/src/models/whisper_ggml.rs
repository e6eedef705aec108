//! Conversion of a CTranslate2 Whisper model to whisper.cpp's ggml format.
//!
//! CTranslate2 fuses attention projections: self-attention query/key/value
//! are one `linear_0` (rows q, k, v), cross-attention key/value are one
//! `linear_1` (rows k, v). Whisper's key projections have no bias; the fused
//! bias carries zeros there (and a key bias would not change attention
//! anyway: it adds the same amount to every score of a query). The file
//! layout follows whisper.cpp's `convert-pt-to-ggml.py`: magic, eleven i32
//! hyper-parameters, the Slaney mel filters, the byte-level vocabulary, then
//! tensors (`n_dims`, name length, type, dims innermost first, name, data).
//! Weights of rank ≥ 2 are f16; biases, norms, conv biases and positional
//! embeddings are f32, as whisper.cpp expects.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::f16;
use sha2::{Digest, Sha256};

use super::ct2::{Ct2Model, Variable};
use super::{mel, ModelError};

const GGML_MAGIC: u32 = 0x6767_6d6c;

/// What a conversion produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Converted {
    /// The ggml file written.
    pub output: PathBuf,
    /// SHA-256 of the output.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Vocabulary size of the model.
    pub n_vocab: usize,
    /// Encoder layers.
    pub encoder_layers: usize,
    /// Decoder layers.
    pub decoder_layers: usize,
    /// Tensors written.
    pub tensors: usize,
}

enum Kind {
    F16,
    F32,
}

struct Writer<W: Write> {
    out: W,
    tensors: usize,
}

impl<W: Write> Writer<W> {
    fn i32(&mut self, v: usize) -> std::io::Result<()> {
        let v = i32::try_from(v).map_err(|_| std::io::Error::other("value does not fit in i32"))?;
        self.out.write_all(&v.to_le_bytes())
    }

    /// Writes a tensor whose numpy shape is `shape` (outermost first).
    fn tensor(&mut self, name: &str, shape: &[usize], values: &[f32], kind: Kind) -> std::io::Result<()> {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        self.i32(shape.len())?;
        self.i32(name.len())?;
        self.i32(match kind {
            Kind::F32 => 0,
            Kind::F16 => 1,
        })?;
        for dim in shape.iter().rev() {
            self.i32(*dim)?;
        }
        self.out.write_all(name.as_bytes())?;
        let mut buffer = Vec::with_capacity(values.len() * 4);
        match kind {
            Kind::F32 => values.iter().for_each(|v| buffer.extend_from_slice(&v.to_le_bytes())),
            Kind::F16 => values.iter().for_each(|v| buffer.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        }
        self.out.write_all(&buffer)?;
        self.tensors += 1;
        Ok(())
    }
}

fn floats(model: &Ct2Model, name: &str) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
    let variable: &Variable = model.get(name)?;
    let scale = model.variables.get(&format!("{name}_scale"));
    let values = variable.to_f32(scale).map_err(|e| ModelError::Ct2Format(format!("{name}: {e}")))?;
    Ok((variable.dims.clone(), values))
}

fn count_layers(model: &Ct2Model, stack: &str) -> usize {
    (0..).take_while(|i| model.variables.contains_key(&format!("{stack}/layer_{i}/ffn/linear_0/weight"))).count()
}

/// Reverses GPT-2's byte-to-unicode mapping used in byte-level BPE vocabularies.
fn byte_decoder() -> std::collections::HashMap<char, u8> {
    let mut printable: Vec<u32> = (u32::from('!')..=u32::from('~')).collect();
    printable.extend(u32::from('¡')..=u32::from('¬'));
    printable.extend(u32::from('®')..=u32::from('ÿ'));
    let mut map = std::collections::HashMap::new();
    let mut extra = 0;
    for byte in 0u32..256 {
        let ch = if printable.contains(&byte) {
            byte
        } else {
            extra += 1;
            255 + extra
        };
        if let (Some(c), Ok(b)) = (char::from_u32(ch), u8::try_from(byte)) {
            map.insert(c, b);
        }
    }
    map
}

/// Reads `vocabulary.txt` (one token per line) or `vocabulary.json` (a list),
/// and returns the byte strings of the regular tokens, up to the first
/// special token (`<|endoftext|>`): whisper.cpp numbers the specials itself.
fn read_vocabulary(dir: &Path) -> Result<Vec<Vec<u8>>, ModelError> {
    let txt = dir.join("vocabulary.txt");
    let json = dir.join("vocabulary.json");
    let tokens: Vec<String> = if txt.exists() {
        std::fs::read_to_string(&txt)
            .map_err(|source| ModelError::Io { path: txt.clone(), source })?
            .lines()
            .map(str::to_owned)
            .collect()
    } else {
        let text = std::fs::read_to_string(&json).map_err(|source| ModelError::Io { path: json.clone(), source })?;
        serde_json::from_str(&text).map_err(|e| ModelError::Ct2Format(format!("{}: {e}", json.display())))?
    };
    let decoder = byte_decoder();
    let mut out = Vec::new();
    for token in tokens.iter().take_while(|t| t.as_str() != "<|endoftext|>") {
        let bytes: Option<Vec<u8>> = token.chars().map(|c| decoder.get(&c).copied()).collect();
        out.push(bytes.ok_or_else(|| ModelError::Ct2Format(format!("token {token:?} is not byte-level BPE")))?);
    }
    Ok(out)
}

/// Converts the CTranslate2 Whisper model in `dir` (`model.bin` and a
/// vocabulary) to a ggml file at `output`, written atomically.
pub fn convert(dir: &Path, output: &Path) -> Result<Converted, ModelError> {
    let model_path = dir.join("model.bin");
    let bytes = std::fs::read(&model_path).map_err(|source| ModelError::Io { path: model_path.clone(), source })?;
    let model = Ct2Model::parse(&bytes)?;
    drop(bytes);
    if model.spec != "WhisperSpec" {
        return Err(ModelError::Ct2Format(format!(
            "{} holds a {} model, not Whisper",
            model_path.display(),
            model.spec
        )));
    }
    let vocabulary = read_vocabulary(dir)?;

    let embeddings = model.get("decoder/embeddings/weight")?;
    let (n_vocab, n_text_state) = (embeddings.dims[0], embeddings.dims[1]);
    let enc_pos = model.get("encoder/position_encodings/encodings")?;
    let (n_audio_ctx, n_audio_state) = (enc_pos.dims[0], enc_pos.dims[1]);
    let n_text_ctx = model.get("decoder/position_encodings/encodings")?.dims[0];
    let n_mels = model.get("encoder/conv1/weight")?.dims[1];
    let heads = |name: &str| -> Result<usize, ModelError> {
        model
            .get(name)?
            .scalar_int()
            .and_then(|h| usize::try_from(h).ok())
            .ok_or_else(|| ModelError::Ct2Format(format!("{name} is not an integer")))
    };
    let (n_audio_head, n_text_head) = (heads("encoder/num_heads")?, heads("decoder/num_heads")?);
    let (n_audio_layer, n_text_layer) = (count_layers(&model, "encoder"), count_layers(&model, "decoder"));

    let partial = output.with_extension("partial");
    let file = std::fs::File::create(&partial).map_err(|source| ModelError::Io { path: partial.clone(), source })?;
    let mut w = Writer { out: BufWriter::new(file), tensors: 0 };
    let io = |source| ModelError::Io { path: partial.clone(), source };

    w.out.write_all(&GGML_MAGIC.to_le_bytes()).map_err(io)?;
    for value in [
        n_vocab,
        n_audio_ctx,
        n_audio_state,
        n_audio_head,
        n_audio_layer,
        n_text_ctx,
        n_text_state,
        n_text_head,
        n_text_layer,
        n_mels,
        1,
    ] {
        w.i32(value).map_err(io)?;
    }
    let filters = mel::mel_filters(n_mels);
    w.i32(n_mels).map_err(io)?;
    w.i32(mel::N_FFT / 2 + 1).map_err(io)?;
    for f in &filters {
        w.out.write_all(&f.to_le_bytes()).map_err(io)?;
    }
    w.i32(vocabulary.len()).map_err(io)?;
    for token in &vocabulary {
        w.i32(token.len()).map_err(io)?;
        w.out.write_all(token).map_err(io)?;
    }

    let weight = |w: &mut Writer<BufWriter<std::fs::File>>, src: &str, dst: &str| -> Result<(), ModelError> {
        let (shape, values) = floats(&model, src)?;
        let kind = if shape.len() >= 2 { Kind::F16 } else { Kind::F32 };
        w.tensor(dst, &shape, &values, kind).map_err(|source| ModelError::Io { path: partial.clone(), source })
    };
    let f32_as = |w: &mut Writer<BufWriter<std::fs::File>>,
                  src: &str,
                  dst: &str,
                  shape: Option<Vec<usize>>|
     -> Result<(), ModelError> {
        let (original, values) = floats(&model, src)?;
        w.tensor(dst, &shape.unwrap_or(original), &values, Kind::F32)
            .map_err(|source| ModelError::Io { path: partial.clone(), source })
    };
    // Splits a fused [parts*n, …] weight or [parts*n] bias into row blocks.
    let split =
        |w: &mut Writer<BufWriter<std::fs::File>>, src: &str, targets: &[Option<&str>]| -> Result<(), ModelError> {
            let (shape, values) = floats(&model, src)?;
            let rows = shape[0] / targets.len();
            let row_len: usize = shape[1..].iter().product::<usize>().max(1);
            for (i, target) in targets.iter().enumerate() {
                let Some(target) = target else { continue };
                let block = &values[i * rows * row_len..(i + 1) * rows * row_len];
                let mut block_shape = shape.clone();
                block_shape[0] = rows;
                let kind = if block_shape.len() >= 2 { Kind::F16 } else { Kind::F32 };
                w.tensor(target, &block_shape, block, kind)
                    .map_err(|source| ModelError::Io { path: partial.clone(), source })?;
            }
            Ok(())
        };

    for conv in ["conv1", "conv2"] {
        weight(&mut w, &format!("encoder/{conv}/weight"), &format!("encoder.{conv}.weight"))?;
        f32_as(&mut w, &format!("encoder/{conv}/bias"), &format!("encoder.{conv}.bias"), Some(vec![n_audio_state, 1]))?;
    }
    f32_as(&mut w, "encoder/position_encodings/encodings", "encoder.positional_embedding", None)?;
    f32_as(&mut w, "decoder/position_encodings/encodings", "decoder.positional_embedding", None)?;
    weight(&mut w, "decoder/embeddings/weight", "decoder.token_embedding.weight")?;
    for (src, dst) in [("encoder/layer_norm", "encoder.ln_post"), ("decoder/layer_norm", "decoder.ln")] {
        weight(&mut w, &format!("{src}/gamma"), &format!("{dst}.weight"))?;
        weight(&mut w, &format!("{src}/beta"), &format!("{dst}.bias"))?;
    }

    let layers = [("encoder", n_audio_layer), ("decoder", n_text_layer)];
    for (stack, count) in layers {
        for i in 0..count {
            let s = format!("{stack}/layer_{i}");
            let d = format!("{stack}.blocks.{i}");
            let pairs = [
                ("self_attention/layer_norm/gamma", "attn_ln.weight"),
                ("self_attention/layer_norm/beta", "attn_ln.bias"),
                ("self_attention/linear_1/weight", "attn.out.weight"),
                ("self_attention/linear_1/bias", "attn.out.bias"),
                ("ffn/layer_norm/gamma", "mlp_ln.weight"),
                ("ffn/layer_norm/beta", "mlp_ln.bias"),
                ("ffn/linear_0/weight", "mlp.0.weight"),
                ("ffn/linear_0/bias", "mlp.0.bias"),
                ("ffn/linear_1/weight", "mlp.2.weight"),
                ("ffn/linear_1/bias", "mlp.2.bias"),
            ];
            for (src, dst) in pairs {
                weight(&mut w, &format!("{s}/{src}"), &format!("{d}.{dst}"))?;
            }
            let (q, k, v) = (format!("{d}.attn.query"), format!("{d}.attn.key"), format!("{d}.attn.value"));
            split(
                &mut w,
                &format!("{s}/self_attention/linear_0/weight"),
                &[Some(&format!("{q}.weight")), Some(&format!("{k}.weight")), Some(&format!("{v}.weight"))],
            )?;
            split(
                &mut w,
                &format!("{s}/self_attention/linear_0/bias"),
                &[Some(&format!("{q}.bias")), None, Some(&format!("{v}.bias"))],
            )?;
            if stack == "decoder" {
                let cross = [
                    ("attention/layer_norm/gamma", "cross_attn_ln.weight"),
                    ("attention/layer_norm/beta", "cross_attn_ln.bias"),
                    ("attention/linear_0/weight", "cross_attn.query.weight"),
                    ("attention/linear_0/bias", "cross_attn.query.bias"),
                    ("attention/linear_2/weight", "cross_attn.out.weight"),
                    ("attention/linear_2/bias", "cross_attn.out.bias"),
                ];
                for (src, dst) in cross {
                    weight(&mut w, &format!("{s}/{src}"), &format!("{d}.{dst}"))?;
                }
                split(
                    &mut w,
                    &format!("{s}/attention/linear_1/weight"),
                    &[Some(&format!("{d}.cross_attn.key.weight")), Some(&format!("{d}.cross_attn.value.weight"))],
                )?;
                split(
                    &mut w,
                    &format!("{s}/attention/linear_1/bias"),
                    &[None, Some(&format!("{d}.cross_attn.value.bias"))],
                )?;
            }
        }
    }
    let tensors = w.tensors;
    let file = w.out.into_inner().map_err(|e| ModelError::Io { path: partial.clone(), source: e.into_error() })?;
    file.sync_all().map_err(|source| ModelError::Io { path: partial.clone(), source })?;
    drop(file);
    std::fs::rename(&partial, output).map_err(|source| ModelError::Io { path: output.to_owned(), source })?;
    let (sha256, bytes) = file_sha256(output)?;
    Ok(Converted {
        output: output.to_owned(),
        sha256,
        bytes,
        n_vocab,
        encoder_layers: n_audio_layer,
        decoder_layers: n_text_layer,
        tensors,
    })
}

/// SHA-256 (hex) and size of a file.
pub fn file_sha256(path: &Path) -> Result<(String, u64), ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_owned(), source })?;
    Ok((hex::encode(Sha256::digest(&bytes)), bytes.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_decoder_inverts_gpt2_byte_encoding() {
        let d = byte_decoder();
        assert_eq!(d.len(), 256);
        assert_eq!(d[&'Ġ'], b' ');
        assert_eq!(d[&'Ċ'], b'\n');
        assert_eq!(d[&'a'], b'a');
    }
}
