//! Reader for CTranslate2 `model.bin` files (binary format versions 4–6).
//!
//! Layout: `u32 version`, `string spec`, `u32 revision`, `u32 n_variables`,
//! then per variable `string name`, `u8 rank`, `u32 dims[rank]`, `u8 dtype`,
//! `u32 n_bytes`, data; then `u32 n_aliases` and pairs of strings. Strings are
//! `u16 length` + bytes including a trailing NUL. All little-endian.

use std::collections::HashMap;

use half::{bf16, f16};

use super::ModelError;

/// Element type of a CTranslate2 variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 8-bit integer (quantized weights, with a `<name>_scale` variable).
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// IEEE half float.
    F16,
    /// bfloat16.
    BF16,
}

impl DType {
    fn from_id(id: u8) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One variable: shape, type and raw little-endian bytes.
#[derive(Debug, Clone)]
pub struct Variable {
    /// Shape, outermost first (row-major).
    pub dims: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Raw data.
    pub data: Vec<u8>,
}

impl Variable {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// Whether the variable has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of an integer scalar (such as `num_heads`).
    pub fn scalar_int(&self) -> Option<i64> {
        let b = &self.data;
        Some(match self.dtype {
            DType::I8 => i64::from(*b.first()? as i8),
            DType::I16 => i64::from(i16::from_le_bytes([*b.first()?, *b.get(1)?])),
            DType::I32 => i64::from(i32::from_le_bytes(b.get(..4)?.try_into().ok()?)),
            _ => return None,
        })
    }

    /// The elements as f32, dequantizing int8 with per-row `scale` (CTranslate2
    /// stores `q = round(w * scale)`).
    pub fn to_f32(&self, scale: Option<&Variable>) -> Result<Vec<f32>, String> {
        match self.dtype {
            DType::F32 => Ok(self.data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            DType::F16 => Ok(self.data.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
            DType::BF16 => Ok(self.data.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
            DType::I8 => {
                let scale = scale.ok_or("int8 variable without its _scale")?.to_f32(None)?;
                let rows = scale.len().max(1);
                let per_row = self.len() / rows;
                Ok(self
                    .data
                    .iter()
                    .enumerate()
                    .map(|(i, q)| f32::from(*q as i8) / scale.get(i / per_row.max(1)).copied().unwrap_or(1.0))
                    .collect())
            }
            other => Err(format!("cannot convert {other:?} to float")),
        }
    }
}

/// A parsed `model.bin`.
#[derive(Debug)]
pub struct Ct2Model {
    /// Spec name, e.g. `WhisperSpec`.
    pub spec: String,
    /// Variables by name (aliases resolved).
    pub variables: HashMap<String, Variable>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {} (wanted {n} more of {})", self.at, self.bytes.len()))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, String> {
        let n = usize::from(self.u16()?);
        let raw = self.take(n)?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(raw.to_vec()).map_err(|_| "variable name is not UTF-8".to_owned())
    }
}

impl Ct2Model {
    /// Parses the bytes of a `model.bin`.
    pub fn parse(bytes: &[u8]) -> Result<Ct2Model, ModelError> {
        Ct2Model::parse_inner(bytes).map_err(ModelError::Ct2Format)
    }

    fn parse_inner(bytes: &[u8]) -> Result<Ct2Model, String> {
        let mut c = Cursor { bytes, at: 0 };
        let version = c.u32()?;
        if !(4..=6).contains(&version) {
            return Err(format!("binary version {version} is not supported (4 to 6 are)"));
        }
        let spec = c.string()?;
        let _revision = c.u32()?;
        let count = c.u32()?;
        let mut variables = HashMap::new();
        for _ in 0..count {
            let name = c.string()?;
            let rank = c.u8()?;
            let dims = (0..rank).map(|_| c.u32().map(|d| d as usize)).collect::<Result<Vec<_>, _>>()?;
            let type_id = c.u8()?;
            let dtype = DType::from_id(type_id).ok_or_else(|| format!("{name}: unknown data type {type_id}"))?;
            let n_bytes = c.u32()? as usize;
            let expected = dims.iter().product::<usize>().max(1) * dtype.size();
            if n_bytes != expected {
                return Err(format!("{name}: {n_bytes} bytes for shape {dims:?} of {dtype:?} (expected {expected})"));
            }
            let data = c.take(n_bytes)?.to_vec();
            variables.insert(name, Variable { dims, dtype, data });
        }
        let aliases = c.u32()?;
        for _ in 0..aliases {
            let alias = c.string()?;
            let target = c.string()?;
            if let Some(v) = variables.get(&target).cloned() {
                variables.insert(alias, v);
            }
        }
        Ok(Ct2Model { spec, variables })
    }

    /// A variable by name, or a format error naming it.
    pub fn get(&self, name: &str) -> Result<&Variable, ModelError> {
        self.variables.get(name).ok_or_else(|| ModelError::Ct2Format(format!("missing variable {name}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn tiny_model() -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&6u32.to_le_bytes());
        string(&mut out, "WhisperSpec");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&2u32.to_le_bytes());
        string(&mut out, "w");
        out.push(2);
        out.extend_from_slice(&2u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.push(4);
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&f16::from_f32(1.5).to_le_bytes());
        out.extend_from_slice(&f16::from_f32(-2.0).to_le_bytes());
        string(&mut out, "heads");
        out.push(0);
        out.push(2);
        out.extend_from_slice(&2u32.to_le_bytes());
        out.extend_from_slice(&6i16.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        string(&mut out, "alias");
        string(&mut out, "w");
        out
    }

    #[test]
    fn parses_variables_scalars_and_aliases() {
        let model = Ct2Model::parse(&tiny_model()).unwrap();
        assert_eq!(model.spec, "WhisperSpec");
        assert_eq!(model.get("w").unwrap().to_f32(None).unwrap(), vec![1.5, -2.0]);
        assert_eq!(model.get("heads").unwrap().scalar_int(), Some(6));
        assert_eq!(model.get("alias").unwrap().dims, vec![2, 1]);
    }

    #[test]
    fn truncated_or_foreign_files_are_errors() {
        let bytes = tiny_model();
        for cut in [0, 3, 10, bytes.len() - 1] {
            assert!(Ct2Model::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Ct2Model::parse(b"RIFF\x00\x00\x00\x00WAVEfmt ").is_err());
    }

    #[test]
    fn int8_dequantizes_per_row() {
        let v = Variable { dims: vec![2, 2], dtype: DType::I8, data: vec![10, 20, 254, 4] };
        let scale = Variable {
            dims: vec![2],
            dtype: DType::F32,
            data: [10.0f32, 2.0].iter().flat_map(|f| f.to_le_bytes()).collect(),
        };
        assert_eq!(v.to_f32(Some(&scale)).unwrap(), vec![1.0, 2.0, -1.0, 2.0]);
    }
}
