import { existsSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { projectRoot } from '../../paths';

/**
 * Holding the emulators to the vendors' own published specs (test/vendor-specs/): every request an
 * emulator receives and every answer it sends is checked against the vendor's OpenAPI document
 * (or, for vendors that publish none, a fixture table written in the same form from their
 * reference pages) or against the vendor's protobuf messages. The check is strict where the specs
 * are lax: an object that does not say otherwise is closed, so a field the vendor does not list is
 * a problem — a connector and an emulator written by the same hands cannot agree on a field the
 * vendor never documented without the test run saying so.
 *
 * Validators are loaded lazily (ajv, protobufjs): the CLI never pays for them.
 */

/** One exchange as the spec check sees it. */
export interface SpecExchange {
  /** The emulator's own endpoint name (its route table's value). */
  endpoint: string;
  method: string;
  /** The decoded path, without the query. */
  pathname: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** The parsed JSON request body; undefined when there is none. */
  body: unknown;
}

export interface SpecReply {
  status: number;
  body?: unknown;
}

export interface SpecCheck {
  /** The problems with a request; none when it follows the spec. */
  request(exchange: SpecExchange): string[];
  /** The problems with the answer to it. */
  response(exchange: SpecExchange, reply: SpecReply): string[];
}

export interface SpecViolation {
  emulator: string;
  endpoint: string;
  direction: 'request' | 'response';
  problems: string[];
}

// --- Violations seen in this process ----------------------------------------------------------

/*
 * Kept on globalThis: the test preload (test/helpers/spec-guard.mjs) and the emulators may be
 * loaded through different module loaders (ESM and CJS), each with its own copy of this module.
 */
const REGISTRY = Symbol.for('deltasync.specViolations');
type Registry = { violations: SpecViolation[]; checked: Record<string, number> };

function registry(): Registry {
  const holder = globalThis as unknown as Record<symbol, Registry | undefined>;
  return (holder[REGISTRY] ??= { violations: [], checked: {} });
}

/** Counts an exchange an emulator held to its spec (so tests can tell the check was on). */
export function countSpecChecked(emulator: string): void {
  const { checked } = registry();
  checked[emulator] = (checked[emulator] ?? 0) + 1;
}

/** Exchanges checked so far, per emulator. */
export function specCheckedExchanges(): Record<string, number> {
  return { ...registry().checked };
}

export function recordSpecViolation(violation: SpecViolation): void {
  registry().violations.push(violation);
}

/** Every violation recorded so far, which are then forgotten (tests that provoke them take them). */
export function takeSpecViolations(): SpecViolation[] {
  const taken = registry().violations;
  registry().violations = [];
  return taken;
}

export function describeViolation(v: SpecViolation): string {
  return `${v.emulator} ${v.endpoint} ${v.direction}: ${v.problems.join('; ')}`;
}

// --- OpenAPI ------------------------------------------------------------------------------------

type Json = Record<string, unknown>;
type Validate = ((data: unknown) => boolean) & { errors?: AjvError[] | null };
interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

interface OperationCheck {
  method: string;
  template: RegExp;
  queryParams: Map<string, { required: boolean; schema: Json; explode: boolean; validate: Validate }>;
  requiredHeaders: string[];
  body?: { required: boolean; validate?: Validate };
  responses: Map<string, Validate | 'no content'>;
}

/**
 * Checks against an OpenAPI 3.x JSON document (`document`: a path from the repository root).
 * `operations` maps each emulator endpoint to `METHOD /path/{template}` as the document's `paths`
 * spell it; null leaves an endpoint unchecked (say why beside it).
 */
export function openApiCheck(options: {
  document: string;
  operations: Record<string, string | null>;
}): SpecCheck {
  const doc = JSON.parse(readFileSync(path.join(projectRoot, options.document), 'utf8')) as Json;
  const ajv = newAjv();
  const compile = (schema: unknown): Validate =>
    ajv.compile(closeSchema(doc, schema, false, new Set()) as Json);
  const checks = new Map<string, OperationCheck>();
  for (const [endpoint, spelled] of Object.entries(options.operations)) {
    if (spelled === null) continue;
    checks.set(endpoint, compileOperation(doc, spelled, compile, options.document));
  }

  return {
    request(exchange) {
      const check = checks.get(exchange.endpoint);
      if (!check) return [];
      const problems: string[] = [];
      if (exchange.method.toUpperCase() !== check.method) {
        problems.push(`${exchange.method} is not the operation's method (${check.method})`);
      }
      if (!check.template.test(exchange.pathname)) {
        problems.push(`path ${exchange.pathname} does not match the operation's path`);
      }
      for (const name of new Set(exchange.query.keys())) {
        const param = check.queryParams.get(name);
        if (!param) {
          problems.push(`query parameter '${name}' is not in the spec`);
          continue;
        }
        const values = exchange.query.getAll(name);
        // An array not exploded comes as one comma-separated value (Klaviyo's fields[profile]).
        const texts =
          param.schema.type === 'array' && !param.explode ? values.flatMap((v) => v.split(',')) : values;
        const typed = texts.map((text) => queryValue(text, param.schema));
        const value = param.schema.type === 'array' ? typed : typed.length > 1 ? typed : typed[0];
        if (!param.validate(value)) problems.push(...explain(`query '${name}'`, param.validate));
      }
      for (const [name, param] of check.queryParams) {
        if (param.required && !exchange.query.has(name))
          problems.push(`query parameter '${name}' is required`);
      }
      for (const header of check.requiredHeaders) {
        if (exchange.headers[header] === undefined) problems.push(`header '${header}' is required`);
      }
      if (exchange.body === undefined) {
        if (check.body?.required) problems.push('the request body is required');
      } else if (!check.body) {
        problems.push('the operation takes no request body');
      } else if (check.body.validate && !check.body.validate(exchange.body)) {
        problems.push(...explain('request body', check.body.validate));
      }
      return problems;
    },
    response(exchange, reply) {
      const check = checks.get(exchange.endpoint);
      if (!check) return [];
      const status = String(reply.status);
      const documented =
        check.responses.get(status) ??
        check.responses.get(`${status[0]}XX`) ??
        check.responses.get('default');
      if (!documented) return [];
      if (documented === 'no content') {
        return reply.body === undefined ? [] : [`a ${status} answer carries no body in the spec`];
      }
      return documented(reply.body) ? [] : explain(`${status} answer body`, documented);
    },
  };
}

function compileOperation(
  doc: Json,
  spelled: string,
  compile: (schema: unknown) => Validate,
  document: string,
): OperationCheck {
  const [method, template] = spelled.split(' ') as [string, string];
  const pathItem = (doc.paths as Json | undefined)?.[template] as Json | undefined;
  const operation = pathItem?.[method.toLowerCase()] as Json | undefined;
  if (!pathItem || !operation) throw new Error(`${document} has no operation ${spelled}`);

  const parameters = [
    ...((pathItem.parameters as unknown[]) ?? []),
    ...((operation.parameters as unknown[]) ?? []),
  ].map((p) => resolve(doc, p) as Json);
  const queryParams = new Map<
    string,
    { required: boolean; schema: Json; explode: boolean; validate: Validate }
  >();
  const requiredHeaders: string[] = [];
  for (const param of parameters) {
    const name = String(param.name);
    if (param.in === 'query') {
      const schema = resolve(doc, param.schema ?? {}) as Json;
      queryParams.set(name, {
        required: param.required === true,
        schema,
        // OpenAPI's default for query parameters: style form, exploded.
        explode: param.explode !== undefined ? param.explode === true : (param.style ?? 'form') === 'form',
        validate: compile(schema),
      });
    } else if (param.in === 'header' && param.required === true) {
      requiredHeaders.push(name.toLowerCase());
    }
  }

  let body: OperationCheck['body'];
  if (operation.requestBody) {
    const requestBody = resolve(doc, operation.requestBody) as Json;
    const schema = jsonSchemaOf(requestBody.content);
    body = { required: requestBody.required === true, validate: schema ? compile(schema) : undefined };
  }

  const responses = new Map<string, Validate | 'no content'>();
  for (const [status, answer] of Object.entries((operation.responses as Json) ?? {})) {
    const schema = jsonSchemaOf((resolve(doc, answer) as Json).content);
    // 2XX-style ranges are matched upper-case; `default` stays as spelled.
    responses.set(
      status === 'default' ? status : status.toUpperCase(),
      schema ? compile(schema) : 'no content',
    );
  }

  const pattern = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+');
  // Servers may carry a base path (Mailchimp's /3.0): the operation's path ends the request's.
  return {
    method: method.toUpperCase(),
    template: new RegExp(`${pattern}$`),
    queryParams,
    requiredHeaders,
    body,
    responses,
  };
}

/** The schema of a JSON media type among `content` (application/json, application/vnd.api+json, …). */
function jsonSchemaOf(content: unknown): unknown {
  if (!content || typeof content !== 'object') return undefined;
  const types = Object.entries(content as Json);
  // A JSON media type, else a catch-all (HubSpot serves its Error document as */*).
  const entry = types.find(([type]) => /json/i.test(type)) ?? types.find(([type]) => type === '*/*');
  return entry ? (entry[1] as Json).schema : undefined;
}

/**
 * Query values arrive as strings: a numeric or boolean parameter is checked as the number or
 * boolean its text spells (bounds included), and text that spells none fails the type.
 */
function queryValue(text: string, schema: Json): unknown {
  const type = schema.type ?? (schema.items as Json | undefined)?.type;
  if ((type === 'integer' || type === 'number') && /^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (type === 'boolean' && (text === 'true' || text === 'false')) return text === 'true';
  return text;
}

function resolve(doc: Json, node: unknown): unknown {
  let current = node;
  for (let hops = 0; hops < 20 && current && typeof current === 'object' && '$ref' in current; hops++) {
    current = pointer(doc, String((current as Json).$ref));
  }
  return current;
}

function pointer(doc: Json, ref: string): unknown {
  if (!ref.startsWith('#/')) throw new Error(`only local $refs are supported, not ${ref}`);
  return ref
    .slice(2)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<unknown>((node, part) => (node as Json | undefined)?.[part], doc);
}

const COMPOSITIONS = ['allOf', 'oneOf', 'anyOf'] as const;

/** Two schemas of one object as one: their properties merged name by name, their required joined. */
function mergeParts(doc: Json, a: unknown, b: unknown): Json {
  const left = resolve(doc, a) as Json;
  const right = resolve(doc, b) as Json;
  const merged: Json = { ...left, ...right };
  if (left.properties || right.properties) {
    const properties: Json = { ...((left.properties as Json) ?? {}) };
    for (const [name, sub] of Object.entries((right.properties as Json) ?? {})) {
      properties[name] = name in properties ? mergeParts(doc, properties[name], sub) : sub;
    }
    merged.properties = properties;
  }
  if (left.required || right.required) {
    merged.required = [
      ...new Set([...((left.required as string[]) ?? []), ...((right.required as string[]) ?? [])]),
    ];
  }
  return merged;
}

/**
 * An OpenAPI schema as a closed JSON Schema (2020-12), $refs inlined: `nullable` becomes a null
 * type, and every object schema that does not say `additionalProperties` gets
 * `unevaluatedProperties: false` — except a part of an allOf, whose siblings hold the rest of the
 * object (the allOf itself is closed). A $ref back to itself accepts anything (no recursion).
 */
function closeSchema(
  doc: Json,
  node: unknown,
  partOfAllOf: boolean,
  stack: Set<string>,
  branch = false,
): unknown {
  if (!node || typeof node !== 'object' || Array.isArray(node)) return node;
  let schema = node as Json;
  if (typeof schema.$ref === 'string') {
    const ref = schema.$ref;
    if (stack.has(ref)) return {};
    const target = closeSchema(doc, pointer(doc, ref), partOfAllOf, new Set([...stack, ref]));
    // Klaviyo writes `nullable: true` beside a $ref (OAS 3.0 ignores siblings; its intent is clear).
    return schema.nullable === true ? { anyOf: [target, { type: 'null' }] } : target;
  }
  schema = { ...schema };
  if (Array.isArray(schema.allOf)) {
    // The parts of an allOf describe one object together, at every depth (Klaviyo's resources
    // extend `attributes` part by part): merged into one schema, which is then closed as a whole.
    const { allOf, ...rest } = schema;
    schema = (allOf as unknown[]).reduce<Json>((merged, part) => mergeParts(doc, merged, part), rest);
  }
  for (const key of [
    'discriminator',
    'example',
    'examples',
    'xml',
    'externalDocs',
    'deprecated',
    'readOnly',
    'writeOnly',
  ])
    delete schema[key];
  for (const key of Object.keys(schema)) if (key.startsWith('x-')) delete schema[key];

  if (schema.properties) {
    schema.properties = Object.fromEntries(
      Object.entries(schema.properties as Json).map(([name, sub]) => [
        name,
        closeSchema(doc, sub, false, stack),
      ]),
    );
  }
  if (schema.items) schema.items = closeSchema(doc, schema.items, false, stack);
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
    schema.additionalProperties = closeSchema(doc, schema.additionalProperties, false, stack);
  }
  for (const key of COMPOSITIONS) {
    if (Array.isArray(schema[key])) {
      schema[key] = (schema[key] as unknown[]).map((sub) =>
        closeSchema(doc, sub, key === 'allOf', stack, key !== 'allOf'),
      );
    }
  }
  if (schema.not) schema.not = closeSchema(doc, schema.not, false, stack);

  if (schema.nullable === true) {
    delete schema.nullable;
    if (typeof schema.type === 'string') schema.type = [schema.type, 'null'];
    if (Array.isArray(schema.enum)) schema.enum = [...(schema.enum as unknown[]), null];
    if (!schema.type && !schema.enum) schema = { anyOf: [schema, { type: 'null' }] };
  } else {
    delete schema.nullable;
  }

  const objectLike =
    schema.type === 'object' || schema.properties !== undefined || Array.isArray(schema.allOf);
  // A oneOf/anyOf branch that only names a type (OAS 3.1's nullable idiom, `oneOf: [{type:
  // object}, {type: null}]` beside `properties`) lists no fields: the schema around it does.
  const typeOnlyBranch =
    branch &&
    schema.properties === undefined &&
    schema.patternProperties === undefined &&
    !COMPOSITIONS.some((key) => Array.isArray(schema[key]));
  if (
    objectLike &&
    !partOfAllOf &&
    !typeOnlyBranch &&
    schema.additionalProperties === undefined &&
    schema.unevaluatedProperties === undefined
  ) {
    schema.unevaluatedProperties = false;
  }
  return schema;
}

function newAjv(): { compile(schema: Json): Validate } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Ajv2020 = (require('ajv/dist/2020') as { default: new (options: object) => AjvInstance }).default;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const addFormats = (require('ajv-formats') as { default: (ajv: AjvInstance) => void }).default;
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  addFormats(ajv);
  // OpenAPI's own formats describe sizes and encodings, not shapes to check.
  for (const format of ['int32', 'int64', 'float', 'double', 'byte', 'binary', 'password', 'decimal'])
    ajv.addFormat(format, true);
  return ajv;
}

interface AjvInstance {
  compile(schema: Json): Validate;
  addFormat(name: string, format: true): void;
}

/** Ajv's errors as sentences: unknown and missing fields said plainly. */
function explain(what: string, validate: Validate): string[] {
  const errors = validate.errors ?? [];
  const sentences = errors
    .filter((e) => !['anyOf', 'oneOf', 'allOf', 'if'].includes(e.keyword) || errors.length === 1)
    .map((e) => {
      const at = e.instancePath ? ` at ${e.instancePath}` : '';
      if (e.keyword === 'unevaluatedProperties' || e.keyword === 'additionalProperties') {
        const field = e.params.unevaluatedProperty ?? e.params.additionalProperty;
        return `${what}${at}: field '${String(field)}' is not in the spec`;
      }
      if (e.keyword === 'required')
        return `${what}${at}: required field '${String(e.params.missingProperty)}' is missing`;
      return `${what}${at}: ${e.message ?? e.keyword}`;
    });
  return [...new Set(sentences)];
}

// --- Protocol buffers (Google Ads REST) --------------------------------------------------------

interface ProtoField {
  name: string;
  type: string;
  repeated: boolean;
  map: boolean;
  resolvedType: ProtoType | ProtoEnum | null;
  options?: Record<string, unknown>;
  partOf?: { name: string } | null;
}
interface ProtoType {
  fullName: string;
  fields: Record<string, ProtoField>;
  oneofsArray: { name: string; fieldsArray: ProtoField[] }[];
  fieldsArray: ProtoField[];
}
interface ProtoEnum {
  values: Record<string, number>;
}
interface ProtoRoot {
  lookupType(name: string): ProtoType;
  lookupTypeOrEnum(name: string): ProtoType | ProtoEnum;
}

/**
 * Checks REST-JSON bodies (the proto3 JSON mapping, lowerCamelCase names) against the vendor's
 * protobuf messages: unknown fields, missing REQUIRED fields (google.api.field_behavior), enum
 * names, scalar types, one field per oneof. `pathFields` are request fields carried in the URL.
 * `errorResponse` names the message an error answer's `error` member holds (google.rpc.Status).
 */
export function protoCheck(options: {
  root: string;
  files: string[];
  operations: Record<string, { request?: string; response?: string; pathFields?: string[] } | null>;
  errorResponse?: string;
}): SpecCheck {
  const root = loadProtos(path.join(projectRoot, options.root), options.files);
  const typeOf = (name: string) => root.lookupType(name.replace(/^\./, ''));
  for (const op of Object.values(options.operations)) {
    if (op?.request) typeOf(op.request);
    if (op?.response) typeOf(op.response);
  }
  if (options.errorResponse) typeOf(options.errorResponse);
  return {
    request(exchange) {
      const op = options.operations[exchange.endpoint];
      if (!op?.request) return [];
      if (exchange.body === undefined && exchange.method.toUpperCase() === 'GET') return [];
      const inPath = new Set((op.pathFields ?? []).map(camel));
      // A body-less POST is checked as an empty message: its required fields are missing.
      return checkMessage(root, typeOf(op.request), exchange.body ?? {}, 'request body', inPath);
    },
    response(exchange, reply) {
      const op = options.operations[exchange.endpoint];
      if (!op) return [];
      if (reply.status >= 400) {
        if (!options.errorResponse) return [];
        const body = reply.body as Json | undefined;
        if (!body || typeof body !== 'object' || !('error' in body))
          return [`${reply.status} answer has no 'error' member`];
        const extra = Object.keys(body).filter((k) => k !== 'error');
        return [
          ...extra.map((k) => `${reply.status} answer: field '${k}' is not in the spec`),
          ...checkMessage(
            root,
            typeOf(options.errorResponse),
            body.error,
            `${reply.status} answer error`,
            new Set(),
          ),
        ];
      }
      if (!op.response || reply.body === undefined) return [];
      return checkMessage(root, typeOf(op.response), reply.body, `${reply.status} answer body`, new Set());
    },
  };
}

function loadProtos(rootDir: string, files: string[]): ProtoRoot {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const protobuf = require('protobufjs') as {
    Root: new () => ProtoRoot & {
      resolvePath: (origin: string, target: string) => string;
      loadSync(files: string[], options: object): ProtoRoot & { resolveAll(): void };
    };
  };
  const root = new protobuf.Root();
  // The vendor's files first; google/protobuf/* (descriptor.proto and friends) ship with protobufjs.
  const bundled = path.dirname(require.resolve('protobufjs/package.json'));
  root.resolvePath = (_origin, target) => {
    const vendor = path.join(rootDir, target);
    return existsSync(vendor) || !target.startsWith('google/protobuf/') ? vendor : path.join(bundled, target);
  };
  const loaded = root.loadSync(files, { keepCase: false, alternateCommentMode: false });
  loaded.resolveAll();
  return loaded;
}

const camel = (name: string) => name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());

function isRequired(field: ProtoField): boolean {
  const behaviour = field.options?.['(google.api.field_behavior)'];
  return Array.isArray(behaviour) ? behaviour.includes('REQUIRED') : behaviour === 'REQUIRED';
}

/** Well-known types as JSON: what each one's JSON form is. */
function wellKnown(fullName: string, value: unknown): string | null | undefined {
  switch (fullName) {
    case '.google.protobuf.Timestamp':
    case '.google.protobuf.Duration':
    case '.google.protobuf.FieldMask':
      return typeof value === 'string' ? null : 'must be a string';
    case '.google.protobuf.Struct':
    case '.google.protobuf.Value':
    case '.google.protobuf.ListValue':
      return null;
    case '.google.protobuf.StringValue':
    case '.google.protobuf.BytesValue':
      return typeof value === 'string' ? null : 'must be a string';
    case '.google.protobuf.BoolValue':
      return typeof value === 'boolean' ? null : 'must be a boolean';
    case '.google.protobuf.Int32Value':
    case '.google.protobuf.UInt32Value':
    case '.google.protobuf.DoubleValue':
    case '.google.protobuf.FloatValue':
      return typeof value === 'number' ? null : 'must be a number';
    case '.google.protobuf.Int64Value':
    case '.google.protobuf.UInt64Value':
      return typeof value === 'number' || (typeof value === 'string' && /^-?\d+$/.test(value))
        ? null
        : 'must be an integer';
    default:
      return undefined;
  }
}

function checkScalar(type: string, value: unknown): string | null {
  switch (type) {
    case 'string':
    case 'bytes':
      return typeof value === 'string' ? null : 'must be a string';
    case 'bool':
      return typeof value === 'boolean' ? null : 'must be a boolean';
    case 'double':
    case 'float':
      return typeof value === 'number' || ['NaN', 'Infinity', '-Infinity'].includes(String(value))
        ? null
        : 'must be a number';
    case 'int64':
    case 'uint64':
    case 'sint64':
    case 'fixed64':
    case 'sfixed64':
    case 'int32':
    case 'uint32':
    case 'sint32':
    case 'fixed32':
    case 'sfixed32':
      return Number.isInteger(value) || (typeof value === 'string' && /^-?\d+$/.test(value))
        ? null
        : 'must be an integer';
    default:
      return null;
  }
}

function checkMessage(
  root: ProtoRoot,
  type: ProtoType,
  value: unknown,
  at: string,
  pathFields: Set<string>,
): string[] {
  const fullName = `.${type.fullName.replace(/^\./, '')}`;
  const typeName = fullName.slice(1);
  const known = wellKnown(fullName, value);
  if (known !== undefined) return known ? [`${at}: ${known}`] : [];
  if (!value || typeof value !== 'object' || Array.isArray(value))
    return [`${at}: must be an object (${typeName})`];
  const object = value as Json;

  if (fullName === '.google.protobuf.Any') {
    const url = object['@type'];
    if (typeof url !== 'string') return [`${at}: an Any needs '@type'`];
    const inner = root.lookupType(url.slice(url.lastIndexOf('/') + 1));
    const rest = Object.fromEntries(Object.entries(object).filter(([k]) => k !== '@type'));
    return checkMessage(root, inner, rest, at, new Set());
  }

  const problems: string[] = [];
  const byJsonName = new Map<string, ProtoField>();
  for (const field of type.fieldsArray) {
    byJsonName.set(field.name, field);
    byJsonName.set(
      field.name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
      field,
    );
  }
  const setFields = new Set<ProtoField>();
  for (const [key, fieldValue] of Object.entries(object)) {
    const field = byJsonName.get(key) ?? byJsonName.get(camel(key));
    if (!field) {
      problems.push(`${at}: field '${key}' is not in ${typeName}`);
      continue;
    }
    setFields.add(field);
    problems.push(...checkField(root, field, fieldValue, `${at}.${key}`));
  }
  for (const field of type.fieldsArray) {
    if (isRequired(field) && !setFields.has(field) && !pathFields.has(field.name)) {
      problems.push(`${at}: required field '${field.name}' is missing`);
    }
  }
  for (const oneof of type.oneofsArray) {
    const set = oneof.fieldsArray.filter((f) => setFields.has(f));
    // proto3 `optional` fields are synthetic oneofs named `_field`: one member, never two.
    if (set.length > 1) problems.push(`${at}: more than one of oneof '${oneof.name}' is set`);
  }
  return problems;
}

function checkField(root: ProtoRoot, field: ProtoField, value: unknown, at: string): string[] {
  if (value === null) return [];
  if (field.map) {
    if (!value || typeof value !== 'object' || Array.isArray(value))
      return [`${at}: must be an object (map)`];
    return Object.entries(value as Json).flatMap(([k, v]) => checkSingle(root, field, v, `${at}.${k}`));
  }
  if (field.repeated) {
    if (!Array.isArray(value)) return [`${at}: must be an array`];
    return value.flatMap((item, i) => checkSingle(root, field, item, `${at}[${i}]`));
  }
  return checkSingle(root, field, value, at);
}

function checkSingle(root: ProtoRoot, field: ProtoField, value: unknown, at: string): string[] {
  const resolved = field.resolvedType;
  if (!resolved) {
    const problem = checkScalar(field.type, value);
    return problem ? [`${at}: ${problem}`] : [];
  }
  if ('values' in resolved) {
    const names = Object.keys(resolved.values);
    const numbers = Object.values(resolved.values);
    return (typeof value === 'string' && names.includes(value)) ||
      (typeof value === 'number' && numbers.includes(value))
      ? []
      : [`${at}: '${String(value)}' is not one of ${names.join(', ')}`];
  }
  return checkMessage(root, resolved, value, at, new Set());
}
