use super::*;

#[test]
fn a_clean_run_has_nothing_to_report() {
    let a = Audit::of(&[0, 1, 2, 3]);
    assert_eq!(
        (a.stored, a.lost, a.duplicates, a.out_of_order),
        (4, 0, 0, 0)
    );
    assert_eq!(a.last, Some(3));
}

#[test]
fn gaps_repeats_and_reordering_are_each_counted() {
    // 2 and 3 missing from 0..=5, 1 stored twice, 4 stored after 5.
    let a = Audit::of(&[0, 1, 1, 5, 4]);
    assert_eq!((a.lost, a.duplicates, a.out_of_order), (2, 1, 1));
    assert_eq!(a.missing, vec![2, 3]);
    // Counting starts at the smallest value stored.
    assert_eq!(Audit::of(&[2, 4, 3]).lost, 0);
    assert_eq!(Audit::of(&[]), Audit::default());
}
