pub(crate) fn compare(_a: &str, _b: &str) -> Result<std::cmp::Ordering, crate::VersionError> {
    todo!()
}
