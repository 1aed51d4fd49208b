//! libnrt's status codes (`NRT_STATUS`; ARCHITECTURE.md, "Status codes") as a Rust type.
//!
//! libnrt may return codes this crate does not know (its header asks consumers to tolerate
//! additions), so [`Status`] keeps them as [`Status::Other`] instead of failing to convert.

use std::fmt;

use crate::bindings::*;

macro_rules! statuses {
    ($( $variant:ident = $konst:ident, $meaning:literal; )*) => {
        /// A libnrt status code. [`Status::Success`] is 0; unknown codes are kept raw.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Status {
            $(
                #[doc = $meaning]
                $variant,
            )*
            /// A code this crate does not know; the raw value is kept.
            Other(NRT_STATUS),
        }

        impl Status {
            /// Interprets a raw status returned by libnrt.
            pub const fn from_raw(raw: NRT_STATUS) -> Status {
                match raw {
                    $( $konst => Status::$variant, )*
                    other => Status::Other(other),
                }
            }

            /// The raw value, as libnrt returned it.
            pub const fn raw(self) -> NRT_STATUS {
                match self {
                    $( Status::$variant => $konst, )*
                    Status::Other(raw) => raw,
                }
            }

            /// libnrt's C name for the code (`"NRT_INVALID"`), or `"NRT_UNKNOWN"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Status::$variant => stringify!($konst), )*
                    Status::Other(_) => "NRT_UNKNOWN",
                }
            }

            /// A one-line meaning of the code.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $( Status::$variant => $meaning, )*
                    Status::Other(_) => "a status code this library does not know",
                }
            }
        }
    };
}

statuses! {
    Success = NRT_SUCCESS, "success";
    Failure = NRT_FAILURE, "generic failure (also: name missing from a tensor set)";
    Invalid = NRT_INVALID, "invalid argument, NEFF, or tensor name/size that does not match the model";
    InvalidHandle = NRT_INVALID_HANDLE, "invalid handle";
    Resource = NRT_RESOURCE, "could not allocate a resource, such as device memory or a NeuronCore";
    Timeout = NRT_TIMEOUT, "operation timed out (see NEURON_RT_EXEC_TIMEOUT)";
    HwError = NRT_HW_ERROR, "hardware failure";
    QueueFull = NRT_QUEUE_FULL, "too many pending executions: the execution queue is full";
    LoadNotEnoughNc = NRT_LOAD_NOT_ENOUGH_NC, "not enough NeuronCores to load the NEFF";
    UnsupportedNeffVersion = NRT_UNSUPPORTED_NEFF_VERSION, "NEFF version not supported by this runtime";
    FailHostMemAlloc = NRT_FAIL_HOST_MEM_ALLOC, "host memory allocation failed";
    Uninitialized = NRT_UNINITIALIZED, "called before nrt_init";
    Closed = NRT_CLOSED, "called after nrt_close";
    QueueEmpty = NRT_QUEUE_EMPTY, "queue has no data";
    ExecUnitUnrecoverable = NRT_EXEC_UNIT_UNRECOVERABLE, "execution unit in a fatal state; the NeuronCore needs a reset";
    ExecBadInput = NRT_EXEC_BAD_INPUT, "invalid input submitted to execute";
    ExecCompletedWithNumErr = NRT_EXEC_COMPLETED_WITH_NUM_ERR, "execution completed with numerical errors (NaN)";
    ExecCompletedWithErr = NRT_EXEC_COMPLETED_WITH_ERR, "execution completed with other errors (logical or parity)";
    ExecNcBusy = NRT_EXEC_NC_BUSY, "the NeuronCore is in use by another model, process or thread";
    ExecOob = NRT_EXEC_OOB, "out-of-bounds memory access during execution, usually from bad inputs";
    CollPending = NRT_COLL_PENDING, "collective operation still pending";
    ExecHwErrCollectives = NRT_EXEC_HW_ERR_COLLECTIVES, "hang in a collective operation, possibly a hardware error on another worker";
    ExecHwErrHbmUe = NRT_EXEC_HW_ERR_HBM_UE, "unrepairable uncorrectable HBM error; results are wrong";
    ExecHwErrNcUe = NRT_EXEC_HW_ERR_NC_UE, "parity error in on-chip NeuronCore memory";
    ExecHwErrDmaAbort = NRT_EXEC_HW_ERR_DMA_ABORT, "unrecoverable error in a DMA engine";
    ExecSwNqOverflow = NRT_EXEC_SW_NQ_OVERFLOW, "software notification-queue overflow (shows as an execution timeout)";
    ExecHwErrRepairableHbmUe = NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE, "repairable uncorrectable HBM error";
    NetworkProxyFailure = NRT_NETWORK_PROXY_FAILURE, "EFA network proxy failure";
}

impl Status {
    /// True for [`Status::Success`].
    pub const fn is_success(self) -> bool {
        matches!(self, Status::Success)
    }

    /// `Ok(())` for success, else `Err(self)`.
    ///
    /// # Errors
    ///
    /// The status itself when it is not [`Status::Success`].
    pub const fn ok(self) -> Result<(), Status> {
        if self.is_success() { Ok(()) } else { Err(self) }
    }

    /// True for codes that point at the NeuronCore rather than at the request: hardware
    /// errors, an unrecoverable execution unit and timeouts. Used for core-health decisions.
    pub const fn is_hardware_class(self) -> bool {
        matches!(
            self,
            Status::HwError
                | Status::Timeout
                | Status::ExecUnitUnrecoverable
                | Status::ExecCompletedWithErr
                | Status::ExecHwErrCollectives
                | Status::ExecHwErrHbmUe
                | Status::ExecHwErrNcUe
                | Status::ExecHwErrDmaAbort
                | Status::ExecSwNqOverflow
                | Status::ExecHwErrRepairableHbmUe
        )
    }
}

impl From<NRT_STATUS> for Status {
    fn from(raw: NRT_STATUS) -> Status {
        Status::from_raw(raw)
    }
}

impl fmt::Display for Status {
    /// `NRT_INVALID (2): invalid argument, ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.raw(), self.meaning())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_round_trips_and_has_a_name() {
        let documented: [(NRT_STATUS, &str); 28] = [
            (0, "NRT_SUCCESS"),
            (1, "NRT_FAILURE"),
            (2, "NRT_INVALID"),
            (3, "NRT_INVALID_HANDLE"),
            (4, "NRT_RESOURCE"),
            (5, "NRT_TIMEOUT"),
            (6, "NRT_HW_ERROR"),
            (7, "NRT_QUEUE_FULL"),
            (9, "NRT_LOAD_NOT_ENOUGH_NC"),
            (10, "NRT_UNSUPPORTED_NEFF_VERSION"),
            (11, "NRT_FAIL_HOST_MEM_ALLOC"),
            (13, "NRT_UNINITIALIZED"),
            (14, "NRT_CLOSED"),
            (15, "NRT_QUEUE_EMPTY"),
            (101, "NRT_EXEC_UNIT_UNRECOVERABLE"),
            (1002, "NRT_EXEC_BAD_INPUT"),
            (1003, "NRT_EXEC_COMPLETED_WITH_NUM_ERR"),
            (1004, "NRT_EXEC_COMPLETED_WITH_ERR"),
            (1005, "NRT_EXEC_NC_BUSY"),
            (1006, "NRT_EXEC_OOB"),
            (1100, "NRT_COLL_PENDING"),
            (1200, "NRT_EXEC_HW_ERR_COLLECTIVES"),
            (1201, "NRT_EXEC_HW_ERR_HBM_UE"),
            (1202, "NRT_EXEC_HW_ERR_NC_UE"),
            (1203, "NRT_EXEC_HW_ERR_DMA_ABORT"),
            (1204, "NRT_EXEC_SW_NQ_OVERFLOW"),
            (1205, "NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE"),
            (1206, "NRT_NETWORK_PROXY_FAILURE"),
        ];
        for (raw, name) in documented {
            let status = Status::from_raw(raw);
            assert!(!matches!(status, Status::Other(_)), "{raw} is documented");
            assert_eq!(status.raw(), raw);
            assert_eq!(status.name(), name);
            assert!(status.to_string().starts_with(&format!("{name} ({raw}): ")));
        }
    }

    #[test]
    fn unknown_codes_are_kept() {
        for raw in [8, 12, 16, 999, 4242, u32::MAX] {
            let status = Status::from_raw(raw);
            assert_eq!(status, Status::Other(raw));
            assert_eq!(status.raw(), raw);
            assert!(status.to_string().contains(&raw.to_string()));
        }
    }

    #[test]
    fn ok_and_classes() {
        assert_eq!(Status::from_raw(0).ok(), Ok(()));
        assert_eq!(Status::from_raw(2).ok(), Err(Status::Invalid));
        assert!(Status::ExecUnitUnrecoverable.is_hardware_class());
        assert!(Status::Timeout.is_hardware_class());
        assert!(!Status::Invalid.is_hardware_class());
    }
}
