//! The FHIR side of the load: Patient bodies to send, and the resource id in
//! a create response's `Location` header.
//!
//! Bodies are written with `format!` from fixed ASCII word lists rather than
//! built as `serde_json::Value`s: at thousands of requests per second the
//! client's own CPU competes with a server on the same two cores. Every
//! interpolated value is either from those lists, digits, or an id that passed
//! [`is_valid_id`], so no JSON escaping is needed.

const FAMILY: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Martinez",
    "Lopez", "Okafor", "Nguyen", "Schmidt", "Rossi", "Kowalski", "Tanaka",
];
const GIVEN: &[&str] = &[
    "Mary", "James", "Patricia", "John", "Jennifer", "Robert", "Linda", "Michael", "Amara", "Wei",
    "Lukas", "Giulia", "Zofia", "Haruto", "Sofia", "Mateo",
];
const CITY: &[&str] = &[
    "Springfield",
    "Riverton",
    "Fairview",
    "Madison",
    "Georgetown",
    "Salem",
    "Franklin",
    "Clinton",
];
const GENDER: &[&str] = &["female", "male", "other", "unknown"];

/// A small, fast, seedable generator (SplitMix64); statistical quality is
/// plenty for picking names and pool entries.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n > 0`); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// The body of a new Patient: identifier, name, telecom, gender, birth date
/// and address, about 500 bytes, like a registration form would produce.
pub fn new_patient(rng: &mut Rng) -> String {
    patient(rng, None)
}

/// The body of an update to Patient `id`: a full Patient (FHIR update
/// replaces the resource) with a new phone number, marked as mobile.
///
/// `id` must satisfy [`is_valid_id`].
pub fn updated_patient(rng: &mut Rng, id: &str) -> String {
    debug_assert!(is_valid_id(id));
    patient(rng, Some(id))
}

fn patient(rng: &mut Rng, id: Option<&str>) -> String {
    let mrn = rng.next_u64() % 10_000_000_000;
    let family = rng.pick(FAMILY);
    let given = rng.pick(GIVEN);
    let second = rng.pick(GIVEN);
    let gender = rng.pick(GENDER);
    let year = 1930 + rng.below(90);
    let month = 1 + rng.below(12);
    let day = 1 + rng.below(28);
    let phone = rng.below(10_000);
    let street = 1 + rng.below(9999);
    let city = rng.pick(CITY);
    let zip = rng.below(100_000);
    let (id_member, phone_use) = match id {
        Some(id) => (format!(r#""id":"{id}","#), "mobile"),
        None => (String::new(), "home"),
    };
    format!(
        concat!(
            r#"{{"resourceType":"Patient",{}"#,
            r#""identifier":[{{"use":"usual","system":"urn:oid:2.16.840.1.113883.4.1","value":"BENCH-{:010}"}}],"#,
            r#""active":true,"#,
            r#""name":[{{"use":"official","family":"{}","given":["{}","{}"]}}],"#,
            r#""telecom":[{{"system":"phone","value":"+1-555-01{:04}","use":"{}"}},"#,
            r#"{{"system":"email","value":"{}.{}@example.org"}}],"#,
            r#""gender":"{}","birthDate":"{}-{:02}-{:02}","#,
            r#""address":[{{"use":"home","line":["{} Main Street"],"city":"{}","postalCode":"{:05}","country":"US"}}]}}"#,
        ),
        id_member,
        mrn,
        family,
        given,
        second,
        phone,
        phone_use,
        given,
        family,
        gender,
        year,
        month,
        day,
        street,
        city,
        zip,
    )
}

/// Whether `id` is a FHIR resource id: 1–64 of `A-Z a-z 0-9 - .`
/// (<https://hl7.org/fhir/R4/datatypes.html#id>).
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The id of a `resource_type` resource in a `Location` header, which FHIR
/// servers set on create as `[base]/[type]/[id]/_history/[vid]`
/// (<https://hl7.org/fhir/R4/http.html#create>); absolute or relative, with or
/// without the history part. `None` if no valid id follows `resource_type`.
pub fn id_from_location<'a>(location: &'a str, resource_type: &str) -> Option<&'a str> {
    let path = location.split(['?', '#']).next().unwrap_or(location);
    let segments: Vec<&str> = path.split('/').collect();
    // The last occurrence, in case the base URL itself contains the type name.
    let at = segments.iter().rposition(|s| *s == resource_type)?;
    segments.get(at + 1).copied().filter(|id| is_valid_id(id))
}

/// The `id` of a resource in a JSON body, for servers that answer a create
/// without `Location`. Only used on that fallback path, so parsing is fine.
pub fn id_from_body(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = value.get("id")?.as_str()?;
    is_valid_id(id).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_forms() {
        let id = |loc| id_from_location(loc, "Patient");
        assert_eq!(id("http://h:8080/fhir/Patient/123/_history/1"), Some("123"));
        assert_eq!(id("http://h/fhir/Patient/a-b.C9"), Some("a-b.C9"));
        assert_eq!(id("Patient/123/_history/4"), Some("123"));
        assert_eq!(id("/fhir/Patient/123?x=1"), Some("123"));
        assert_eq!(
            id("https://h/Patient/fhir/Patient/0e8f5b9a-7c1d-4f0e-9a51-2c3b4d5e6f70/_history/2"),
            Some("0e8f5b9a-7c1d-4f0e-9a51-2c3b4d5e6f70")
        );
        assert_eq!(id("http://h/fhir/Patient/"), None);
        assert_eq!(id("http://h/fhir/Patient"), None);
        assert_eq!(id("http://h/fhir/Observation/1/_history/1"), None);
        assert_eq!(id("http://h/fhir/Patient/bad%20id"), None);
        assert_eq!(id(""), None);
    }

    #[test]
    fn ids() {
        assert!(is_valid_id("abc-123.X"));
        assert!(is_valid_id(&"a".repeat(64)));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("a\"b"));
    }

    #[test]
    fn body_fallback() {
        assert_eq!(
            id_from_body(br#"{"resourceType":"Patient","id":"7"}"#),
            Some("7".into())
        );
        assert_eq!(id_from_body(br#"{"resourceType":"Patient"}"#), None);
        assert_eq!(id_from_body(br#"{"id":"no spaces"}"#), None);
        assert_eq!(id_from_body(b"not json"), None);
    }

    #[test]
    fn patients_are_valid_json() {
        let mut rng = Rng::new(42);
        for _ in 0..200 {
            let new: serde_json::Value = serde_json::from_str(&new_patient(&mut rng)).unwrap();
            assert_eq!(new["resourceType"], "Patient");
            assert!(new.get("id").is_none());
            assert_eq!(new["telecom"][0]["use"], "home");
            assert_eq!(new["birthDate"].as_str().unwrap().len(), 10);

            let upd: serde_json::Value =
                serde_json::from_str(&updated_patient(&mut rng, "abc-1")).unwrap();
            assert_eq!(upd["id"], "abc-1");
            assert_eq!(upd["telecom"][0]["use"], "mobile");
        }
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(3) < 3);
            b.below(3);
        }
    }
}
