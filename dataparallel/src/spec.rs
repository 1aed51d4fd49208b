//! What the engine knows about the model's inputs and outputs, taken once from the first
//! replica's tensor infos (every replica loads the same NEFF), and the two checks every
//! front-end makes against them: which given tensor feeds which model tensor
//! ([`ModelSpec::match_tensors`], [`MatchError`]) and whether a dtype fits
//! ([`IoSpec::accepts_dtype`]). The engine, the batcher, the CLI and (through the engine) the
//! C ABI all use these, so a rule and its message exist once.

use std::fmt;

use neuron_rt::{DType, TensorInfo};

use crate::error::{Error, Result};
use crate::quote::quote;

/// One model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoSpec {
    /// The model's name for it.
    pub name: String,
    /// The element type the runtime reports (advisory: `None` when unknown).
    pub dtype: Option<DType>,
    /// Bytes per element, from `size / elements` when the dtype is unknown.
    pub elem_size: usize,
    /// The compiled shape.
    pub shape: Vec<usize>,
    /// The compiled size in bytes.
    pub size: usize,
}

impl IoSpec {
    pub(crate) fn from_info(info: &TensorInfo) -> Result<IoSpec> {
        let elements = info.elements();
        let elem_size = match info.dtype {
            Some(dtype) => dtype.size_bytes(),
            None if elements > 0 && info.size % elements == 0 => info.size / elements,
            None => {
                return Err(Error::config(format!(
                    "model tensor {} has an unknown dtype (code {}) and a size ({} bytes) that \
                     is not a whole number of its {} elements; recompile the model",
                    quote(&info.name),
                    info.raw_dtype,
                    info.size,
                    elements
                )));
            }
        };
        if elements.checked_mul(elem_size) != Some(info.size) {
            return Err(Error::config(format!(
                "model tensor {} reports {} bytes but its shape {:?} of {}-byte elements needs \
                 {}; recompile the model",
                quote(&info.name),
                info.size,
                info.shape,
                elem_size,
                elements.saturating_mul(elem_size)
            )));
        }
        Ok(IoSpec {
            name: info.name.clone(),
            dtype: info.dtype,
            elem_size,
            shape: info.shape.clone(),
            size: info.size,
        })
    }

    /// True when `shape` is this tensor's compiled shape on every dim but `dim` (the batch
    /// dim, whose size is free).
    pub fn accepts_shape(&self, shape: &[usize], dim: usize) -> bool {
        shape.len() == self.shape.len()
            && shape
                .iter()
                .zip(&self.shape)
                .enumerate()
                .all(|(d, (got, want))| d == dim || got == want)
    }

    /// True when a tensor of `dtype` can feed (or receive) this one: the model's dtype when
    /// the runtime reports it, else any dtype of the same element size.
    pub fn accepts_dtype(&self, dtype: DType) -> bool {
        match self.dtype {
            Some(expected) => expected == dtype,
            None => dtype.size_bytes() == self.elem_size,
        }
    }

    /// The dtype the runtime reports, or when it reports none, the unsigned integer of the
    /// element size (1, 2, 4 or 8 bytes), which carries the raw bits: what front-ends label an
    /// output of unknown dtype with. `None` for an unknown dtype of another element size.
    pub fn dtype_or_raw(&self) -> Option<DType> {
        self.dtype.or(match self.elem_size {
            1 => Some(DType::UInt8),
            2 => Some(DType::UInt16),
            4 => Some(DType::UInt32),
            8 => Some(DType::UInt64),
            _ => None,
        })
    }

    /// The dtype's name for messages: `float32`, or `4-byte elements` when the runtime does
    /// not report it.
    pub fn dtype_name(&self) -> String {
        self.dtype.map_or_else(
            || format!("{}-byte elements", self.elem_size),
            |d| d.name().to_owned(),
        )
    }
}

/// The model's inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Inputs, in the runtime's order.
    pub inputs: Vec<IoSpec>,
    /// Outputs, in the runtime's order.
    pub outputs: Vec<IoSpec>,
}

impl ModelSpec {
    /// The inputs or the outputs.
    pub fn tensors(&self, side: Side) -> &[IoSpec] {
        match side {
            Side::Input => &self.inputs,
            Side::Output => &self.outputs,
        }
    }

    /// Decides how `given` tensors feed the model's `side` tensors and checks that each model
    /// tensor is fed exactly once: by position when none is named (then there must be one
    /// per model tensor), by name when all are. `name_of` reads a given tensor's name.
    ///
    /// Allocates nothing unless it fails. Use [`Matching::find`] to look a model tensor's
    /// feed up afterwards, or [`ModelSpec::assign`] to get them all at once.
    ///
    /// ```
    /// use dataparallel::{IoSpec, MatchError, ModelSpec, Side};
    ///
    /// let io = |name: &str| IoSpec {
    ///     name: name.to_owned(),
    ///     dtype: None,
    ///     elem_size: 4,
    ///     shape: vec![1],
    ///     size: 4,
    /// };
    /// let spec = ModelSpec { inputs: vec![io("a"), io("b")], outputs: vec![] };
    /// let given = [Some("b"), Some("a")];
    /// assert!(spec.match_tensors(Side::Input, &given, |n| *n).is_ok());
    /// assert_eq!(spec.assign(Side::Input, &given, |n| *n).unwrap(), [1, 0]);
    /// let twice = [Some("a"), Some("a")];
    /// let err = spec.match_tensors(Side::Input, &twice, |n| *n).unwrap_err();
    /// assert!(matches!(err, MatchError::Duplicate { .. }));
    /// ```
    ///
    /// # Errors
    ///
    /// [`MatchError::Count`], [`Mixed`](MatchError::Mixed), [`Unknown`](MatchError::Unknown),
    /// [`Duplicate`](MatchError::Duplicate) or [`Missing`](MatchError::Missing), in that
    /// order of checking.
    pub fn match_tensors<T>(
        &self,
        side: Side,
        given: &[T],
        name_of: impl Fn(&T) -> Option<&str>,
    ) -> Result<Matching, MatchError> {
        let specs = self.tensors(side);
        let model = || specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        let named = given.iter().filter(|t| name_of(t).is_some()).count();
        if named == 0 {
            if given.len() != specs.len() {
                return Err(MatchError::Count {
                    side,
                    given: given.len(),
                    model: model(),
                });
            }
            return Ok(Matching::Position);
        }
        if named != given.len() {
            return Err(MatchError::Mixed {
                side,
                named,
                given: given.len(),
            });
        }
        for (i, tensor) in given.iter().enumerate() {
            let name = name_of(tensor).unwrap_or_default();
            if !specs.iter().any(|s| s.name == name) {
                return Err(MatchError::Unknown {
                    side,
                    name: name.to_owned(),
                    model: model(),
                });
            }
            if given[..i].iter().any(|t| name_of(t) == Some(name)) {
                return Err(MatchError::Duplicate {
                    side,
                    name: name.to_owned(),
                });
            }
        }
        // Every given name is a model name and none repeats; with fewer given than model
        // tensors, one is missing.
        if let Some(missing) = specs
            .iter()
            .find(|s| !given.iter().any(|t| name_of(t) == Some(s.name.as_str())))
        {
            return Err(MatchError::Missing {
                side,
                name: missing.name.clone(),
                model: model(),
            });
        }
        Ok(Matching::Name)
    }

    /// As [`match_tensors`](Self::match_tensors), returning for each model `side` tensor (in
    /// the model's order) the index in `given` of the tensor that feeds it.
    ///
    /// # Errors
    ///
    /// As [`match_tensors`](Self::match_tensors).
    pub fn assign<T>(
        &self,
        side: Side,
        given: &[T],
        name_of: impl Fn(&T) -> Option<&str>,
    ) -> Result<Vec<usize>, MatchError> {
        let matching = self.match_tensors(side, given, &name_of)?;
        Ok(self
            .tensors(side)
            .iter()
            .enumerate()
            .filter_map(|(index, spec)| {
                matching
                    .find(given, index, &spec.name, &name_of)
                    .map(|(i, _)| i)
            })
            .collect())
    }
}

/// Which of a model's tensors: its inputs or its outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The model's inputs.
    Input,
    /// The model's outputs.
    Output,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Input => "input",
            Side::Output => "output",
        })
    }
}

/// How given tensors were matched to model tensors by [`ModelSpec::match_tensors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// Given tensor `i` feeds model tensor `i`.
    Position,
    /// Given tensors carry the model's names.
    Name,
}

impl Matching {
    /// The given tensor (and its index) that feeds model tensor `index`, called `name`.
    pub fn find<'g, T>(
        self,
        given: &'g [T],
        index: usize,
        name: &str,
        name_of: impl Fn(&T) -> Option<&str>,
    ) -> Option<(usize, &'g T)> {
        match self {
            Matching::Position => given.get(index).map(|t| (index, t)),
            Matching::Name => given
                .iter()
                .enumerate()
                .find(|(_, t)| name_of(t) == Some(name)),
        }
    }
}

/// Why given tensors do not match the model's (see [`ModelSpec::match_tensors`]). Names are
/// the given ones and the model's; messages quote them with [`quote`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MatchError {
    /// None is named and their number is not the model's.
    #[error(
        "the model has {} {side}s ({}) but {given} were given; pass one per model {side}, or \
         name them",
        .model.len(),
        NameList(.model)
    )]
    Count {
        /// Inputs or outputs.
        side: Side,
        /// How many were given.
        given: usize,
        /// The model's names, in its order.
        model: Vec<String>,
    },
    /// Some are named and some are not.
    #[error("name every {side} or none: {named} of {given} {side}s are named")]
    Mixed {
        /// Inputs or outputs.
        side: Side,
        /// How many are named.
        named: usize,
        /// How many were given.
        given: usize,
    },
    /// A name the model does not have.
    #[error("the model has no {side} {}; its {side}s are {}", quote(.name), NameList(.model))]
    Unknown {
        /// Inputs or outputs.
        side: Side,
        /// The given name.
        name: String,
        /// The model's names, in its order.
        model: Vec<String>,
    },
    /// A name given more than once.
    #[error("{side} {} is given twice; give each {side} once", quote(.name))]
    Duplicate {
        /// Inputs or outputs.
        side: Side,
        /// The repeated name.
        name: String,
    },
    /// A model tensor that no given tensor names.
    #[error("{side} {} is missing; the model's {side}s are {}", quote(.name), NameList(.model))]
    Missing {
        /// Inputs or outputs.
        side: Side,
        /// The model's name that was not given.
        name: String,
        /// The model's names, in its order.
        model: Vec<String>,
    },
}

impl MatchError {
    /// Inputs or outputs.
    pub fn side(&self) -> Side {
        match self {
            MatchError::Count { side, .. }
            | MatchError::Mixed { side, .. }
            | MatchError::Unknown { side, .. }
            | MatchError::Duplicate { side, .. }
            | MatchError::Missing { side, .. } => *side,
        }
    }
}

/// The most names a message lists before saying how many more there are.
const LIST_MAX_NAMES: usize = 8;

/// Names for a message: quoted, comma-separated, at most [`LIST_MAX_NAMES`] of them.
pub(crate) struct NameList<'a>(pub(crate) &'a [String]);

impl fmt::Display for NameList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().take(LIST_MAX_NAMES).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", quote(name))?;
        }
        if self.0.len() > LIST_MAX_NAMES {
            write!(f, " and {} more", self.0.len() - LIST_MAX_NAMES)?;
        }
        Ok(())
    }
}
