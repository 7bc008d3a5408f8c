// A real OpenID provider (npm oidc-provider) for server/tests/oidc.rs, on loopback.
//
//   node provider.mjs PORT
//
// Issues RS256 JWT access tokens (typ at+jwt) for the audience `fhir-notary` by
// client_credentials, with the role, patient and fhirUser claims FHIR Notary reads.
// Clients: `backend` (role system), `ward` (role practitioner, fhirUser Practitioner/ward-1),
// `patient-app` (role patient, patient context pat-oidc). `/forge/<kind>` hands out hostile
// tokens for the attack tests; `/forge/valid` signs a good one the same way, so the forging
// itself is shown to work. Prints READY when listening.
import Provider from 'oidc-provider';
import * as jose from 'jose';

const port = Number(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;
const audience = 'fhir-notary';
const scopes = [
  'system/*.cruds', 'system/*.rs', 'system/Patient.r', 'system/Observation.rs',
  'user/*.cruds', 'patient/*.rs', 'launch/patient',
];

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
const attacker = await jose.generateKeyPair('RS256', { extractable: true });

const claimsFor = {
  backend: { fhir_notary_role: 'system' },
  ward: { fhir_notary_role: 'practitioner', fhirUser: 'Practitioner/ward-1' },
  'patient-app': { fhir_notary_role: 'patient', patient: 'pat-oidc' },
};
const client = (id) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: scopes.join(' '),
});

const provider = new Provider(issuer, {
  jwks: { keys: [signingJwk] },
  clients: Object.keys(claimsFor).map(client),
  scopes,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:fhir-notary',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: scopes.join(' '),
        audience,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => claimsFor[token.clientId] ?? {},
});

const now = () => Math.floor(Date.now() / 1000);
const base = () => ({
  iss: issuer, aud: audience, sub: 'forger', exp: now() + 300, iat: now(),
  scope: 'system/*.rs', fhir_notary_role: 'system',
});
const sign = (claims, key, kid, alg = 'RS256') =>
  new jose.SignJWT(claims).setProtectedHeader({ alg, kid, typ: 'at+jwt' }).sign(key);
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const forge = {
  valid: () => sign(base(), privateKey, 'k1'),
  'wrong-aud': () => sign({ ...base(), aud: 'someone-else' }, privateKey, 'k1'),
  'wrong-iss': () => sign({ ...base(), iss: 'http://127.0.0.1:1' }, privateKey, 'k1'),
  expired: () => sign({ ...base(), exp: now() - 3600, iat: now() - 7200 }, privateKey, 'k1'),
  'not-yet-valid': () => sign({ ...base(), nbf: now() + 3600 }, privateKey, 'k1'),
  'unknown-kid': () => sign(base(), attacker.privateKey, 'k-unknown'),
  // The attacker's key presented under the provider's kid, as if swapped into the JWKS.
  'swapped-key': () => sign(base(), attacker.privateKey, 'k1'),
  'alg-none': async () => `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64(base())}.`,
  // HMAC keyed with the provider's public key, the classic algorithm confusion.
  'hmac-with-public-key': async () => {
    const pub = await jose.exportSPKI(await jose.importJWK(
      { kty: signingJwk.kty, n: signingJwk.n, e: signingJwk.e }, 'RS256'));
    return sign(base(), new TextEncoder().encode(pub), 'k1', 'HS256');
  },
};
provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/forge\/([a-z-]+)$/);
  if (!m) return next();
  const make = forge[m[1]];
  if (!make) { ctx.status = 404; return; }
  ctx.type = 'text/plain';
  ctx.body = await make();
});

provider.listen(port, '127.0.0.1', () => console.log('READY'));
