//! Pins the classification table: every [`ErrorKind`] → CLI exit code → `ndp_status_t`
//! (`error_kinds.in`, also checked by the CLI's unit test and shown in the README), and a few
//! real errors → their kind.

use dataparallel::ErrorKind;
use neuron_dp::ndp_status_t;
use neuron_dp::status_of_kind;

const TABLE: [(ErrorKind, u8, &str); 15] = include!("error_kinds.in");

#[test]
fn every_kind_has_one_row_and_its_c_status() {
    for kind in ErrorKind::ALL {
        let rows: Vec<_> = TABLE.iter().filter(|(k, _, _)| *k == kind).collect();
        assert_eq!(rows.len(), 1, "{kind:?} must have exactly one row");
        let (_, exit, status) = rows[0];
        assert_eq!(format!("{:?}", status_of_kind(kind)), *status, "{kind:?}");
        assert_eq!(
            *exit,
            if kind.is_bad_input() { 2 } else { 1 },
            "{kind:?}: bad input exits 2, failures exit 1"
        );
    }
    // Distinct kinds get distinct statuses, so C callers can tell every kind apart.
    let mut statuses: Vec<ndp_status_t> =
        ErrorKind::ALL.iter().map(|k| status_of_kind(*k)).collect();
    statuses.sort_by_key(|s| *s as i32);
    statuses.dedup();
    assert_eq!(statuses.len(), ErrorKind::ALL.len());
}

#[test]
fn runtime_errors_are_classified_by_cause() {
    use dataparallel::Error;
    use neuron_rt::{DeviceIds, NeffError};
    let ids = DeviceIds::parse_list("nc:0,nc:0").expect_err("a repeated core");
    assert_eq!(
        Error::from(neuron_rt::Error::from(ids)).kind(),
        ErrorKind::DeviceIds
    );
    let neff = neuron_rt::Neff::from_bytes(vec![0u8; 3]).expect_err("too short");
    assert_eq!(Error::from(neff).kind(), ErrorKind::Neff);
    let missing =
        neuron_rt::Neff::from_path("/nonexistent/model.neff".as_ref()).expect_err("no such file");
    assert!(matches!(missing, NeffError::Io { .. }));
    assert_eq!(Error::from(missing).kind(), ErrorKind::Io);
}
