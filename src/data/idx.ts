/**
 * IDX files: the format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).
 *
 * Layout: a 4-byte magic `0x00 0x00 <type> <rank>`, then `rank` big-endian uint32 sizes, then
 * the values in row-major order, big-endian. Files may be gzipped; gzip is recognised by its
 * magic bytes (0x1f 0x8b), never by the file name.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { gunzip, gunzipSync, gzipSync } from 'node:zlib';
import { promisify } from 'node:util';
import { DatasetError, GENERIC_DATA_HINT } from './errors';
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';

const gunzipAsync = promisify(gunzip);

/** The element types IDX can hold. */
export type IdxDataType = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';

/** The typed array that holds each {@link IdxDataType}. */
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

/** A decoded IDX file: an n-dimensional array. */
export interface IdxArray {
  readonly dataType: IdxDataType;
  /** Sizes, outermost first, e.g. `[60000, 28, 28]` for MNIST training images. */
  readonly shape: readonly number[];
  /** The values in row-major order, in native byte order. */
  readonly data: IdxData;
}

interface TypeInfo {
  readonly code: number;
  readonly dataType: IdxDataType;
  readonly bytes: number;
  readonly create: (length: number) => IdxData;
}

const TYPES: readonly TypeInfo[] = [
  { code: 0x08, dataType: 'uint8', bytes: 1, create: (n) => new Uint8Array(n) },
  { code: 0x09, dataType: 'int8', bytes: 1, create: (n) => new Int8Array(n) },
  { code: 0x0b, dataType: 'int16', bytes: 2, create: (n) => new Int16Array(n) },
  { code: 0x0c, dataType: 'int32', bytes: 4, create: (n) => new Int32Array(n) },
  { code: 0x0d, dataType: 'float32', bytes: 4, create: (n) => new Float32Array(n) },
  { code: 0x0e, dataType: 'float64', bytes: 8, create: (n) => new Float64Array(n) },
];

const hex = (byte: number): string => `0x${byte.toString(16).padStart(2, '0')}`;

/** True when `bytes` start with the gzip magic number. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Decodes the bytes of an IDX file (already gunzipped).
 * @param path Only used in error messages.
 * @param hint How to get a good copy of the file; ends up in error messages.
 * @throws {@link DatasetError} on a wrong magic number, an unknown type, or a length that does not
 *   match the sizes in the header (truncated file or trailing bytes).
 */
export function parseIdx(bytes: Uint8Array, path: string, hint = GENERIC_DATA_HINT): IdxArray {
  const bad = (problem: string): never => {
    throw new DatasetError(path, problem, hint);
  };
  if (bytes.length < 4) bad(`truncated: ${bytes.length} bytes is shorter than the 4-byte IDX magic number`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    bad(
      `wrong magic number: an IDX file starts with 0x00 0x00 <type> <rank> but this one starts with ` +
        `${[...bytes.subarray(0, 4)].map(hex).join(' ')} (not an IDX file)`,
    );
  }
  const type = TYPES.find((t) => t.code === bytes[2]);
  if (!type) bad(`unknown IDX element type ${hex(bytes[2])} (expected one of ${TYPES.map((t) => hex(t.code)).join(', ')})`);
  const { dataType, bytes: width, create } = type!;
  const rank = bytes[3];
  if (rank === 0) bad('the IDX header declares rank 0 (no dimensions)');
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) {
    bad(`truncated: the header of a rank-${rank} IDX file needs ${headerBytes} bytes but the file has ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape: number[] = [];
  for (let d = 0; d < rank; d++) shape.push(view.getUint32(4 + 4 * d, false));
  const length = shape.reduce((a, b) => a * b, 1);
  const expectedBytes = headerBytes + length * width;
  if (bytes.length !== expectedBytes) {
    const what = bytes.length < expectedBytes ? 'truncated' : 'trailing bytes after the data';
    bad(
      `${what}: the header declares ${dataType} values of shape [${shape.join(', ')}], ` +
        `which needs ${expectedBytes} bytes, but the file has ${bytes.length}`,
    );
  }
  const data = create(length);
  if (width === 1) {
    // Copy so the result owns an exactly-sized buffer (the input may be a pooled or larger buffer).
    (data as Uint8Array | Int8Array).set(
      dataType === 'uint8'
        ? bytes.subarray(headerBytes)
        : new Int8Array(bytes.buffer, bytes.byteOffset + headerBytes, length),
    );
  } else {
    const read = readerFor(view, dataType);
    for (let i = 0; i < length; i++) data[i] = read(headerBytes + i * width);
  }
  return { dataType, shape, data };
}

function readerFor(view: DataView, dataType: IdxDataType): (offset: number) => number {
  switch (dataType) {
    case 'int16':
      return (o) => view.getInt16(o, false);
    case 'int32':
      return (o) => view.getInt32(o, false);
    case 'float32':
      return (o) => view.getFloat32(o, false);
    case 'float64':
      return (o) => view.getFloat64(o, false);
    default:
      throw new Error(`unreachable: ${dataType} is a one-byte type`);
  }
}

/** Gunzips `bytes` when they are gzip data, turning zlib failures into a {@link DatasetError}. */
function gunzipIfNeeded(bytes: Uint8Array, path: string, hint: string): Uint8Array {
  if (!isGzip(bytes)) return bytes;
  try {
    return gunzipSync(bytes);
  } catch (e) {
    throw new DatasetError(path, `corrupt or truncated gzip data (${(e as Error).message})`, hint);
  }
}

/** Decodes an IDX file's bytes, raw or gzipped. See {@link parseIdx}. */
export function decodeIdx(fileBytes: Uint8Array, path: string, hint = GENERIC_DATA_HINT): IdxArray {
  return parseIdx(gunzipIfNeeded(fileBytes, path, hint), path, hint);
}

/** Reads a file, turning a missing or unreadable file into a {@link DatasetError}. */
export async function readDataFile(path: string, hint: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DatasetError(path, code === 'ENOENT' ? 'no such file' : `unreadable (${(e as Error).message})`, hint);
  }
}

/**
 * Reads and decodes an IDX file, raw or gzipped.
 * @param hint How to get a good copy of the file; ends up in error messages.
 * @throws {@link DatasetError} naming the file when it is missing, not IDX, or truncated.
 */
export async function readIdxFile(path: string, hint = GENERIC_DATA_HINT): Promise<IdxArray> {
  const fileBytes = await readDataFile(path, hint);
  let bytes = fileBytes;
  if (isGzip(fileBytes)) {
    try {
      bytes = await gunzipAsync(fileBytes); // off the main thread: the training images are ~47 MB
    } catch (e) {
      throw new DatasetError(path, `corrupt or truncated gzip data (${(e as Error).message})`, hint);
    }
  }
  return parseIdx(bytes, path, hint);
}

/** A stack of single-channel uint8 images, as MNIST stores them. */
export interface IdxImages {
  /** `count * height * width` pixels, row-major (NHW). */
  readonly pixels: Uint8Array;
  readonly count: number;
  readonly height: number;
  readonly width: number;
}

/**
 * Reads an MNIST-style image file: uint8 values of rank 3 `[count, height, width]`.
 * @throws {@link DatasetError} when the file is not such a file.
 */
export async function readIdxImages(path: string, hint = GENERIC_DATA_HINT): Promise<IdxImages> {
  const array = await readIdxFile(path, hint);
  if (array.dataType !== 'uint8' || array.shape.length !== 3) {
    throw new DatasetError(
      path,
      `expected uint8 images of rank 3 [count, height, width] but the file holds ${array.dataType} values ` +
        `of shape [${array.shape.join(', ')}]`,
      hint,
    );
  }
  const [count, height, width] = array.shape;
  return { pixels: array.data as Uint8Array, count, height, width };
}

/**
 * Reads an MNIST-style label file: uint8 values of rank 1.
 * @throws {@link DatasetError} when the file is not such a file.
 */
export async function readIdxLabels(path: string, hint = GENERIC_DATA_HINT): Promise<Int32Array> {
  const array = await readIdxFile(path, hint);
  if (array.dataType !== 'uint8' || array.shape.length !== 1) {
    throw new DatasetError(
      path,
      `expected uint8 labels of rank 1 but the file holds ${array.dataType} values of shape [${array.shape.join(', ')}]`,
      hint,
    );
  }
  return Int32Array.from(array.data);
}

/**
 * Encodes an array as IDX bytes (big-endian, not gzipped).
 * @throws {@link InvalidArgumentError} when `data.length` does not match `shape`, or the data does not
 *   fit the type (e.g. a Float32Array with `dataType: 'uint8'`).
 */
export function encodeIdx(array: IdxArray): Uint8Array {
  const type = TYPES.find((t) => t.dataType === array.dataType);
  if (!type) validate.fail('array.dataType', `one of ${TYPES.map((t) => `'${t.dataType}'`).join(', ')}`, array.dataType);
  const { code, bytes: width, create } = type!;
  const rank = array.shape.length;
  if (rank < 1 || rank > 255) validate.fail('array.shape', 'an array of rank 1 to 255', array.shape);
  array.shape.forEach((d, i) => validate.integer(`array.shape[${i}]`, d, 0, 0xffffffff));
  const length = array.shape.reduce((a, b) => a * b, 1);
  const ctor = create(0).constructor as { name: string; new (): IdxData };
  if (!(array.data instanceof ctor)) validate.fail('array.data', `${ctor.name} for dataType '${array.dataType}'`, array.data);
  if (array.data.length !== length) {
    throw new InvalidArgumentError(
      'array.data',
      `length ${length} (the product of shape [${array.shape.join(', ')}])`,
      `length ${array.data.length}`,
    );
  }
  const headerBytes = 4 + 4 * array.shape.length;
  const out = new Uint8Array(headerBytes + length * width);
  const view = new DataView(out.buffer);
  out[2] = code;
  out[3] = array.shape.length;
  array.shape.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  if (width === 1) {
    out.set(new Uint8Array(array.data.buffer, array.data.byteOffset, length), headerBytes);
  } else {
    for (let i = 0; i < length; i++) {
      const o = headerBytes + i * width;
      const v = array.data[i];
      if (array.dataType === 'int16') view.setInt16(o, v, false);
      else if (array.dataType === 'int32') view.setInt32(o, v, false);
      else if (array.dataType === 'float32') view.setFloat32(o, v, false);
      else view.setFloat64(o, v, false);
    }
  }
  return out;
}

/** Options of {@link writeIdxFile}. */
export interface WriteIdxOptions {
  /** Gzip the file (default true). Node's gzip header carries no timestamp, so output is reproducible. */
  gzip?: boolean;
  /** zlib compression level 0-9 (default 9). */
  level?: number;
}

/** Writes an array as an IDX file, gzipped by default. */
export async function writeIdxFile(path: string, array: IdxArray, options: WriteIdxOptions = {}): Promise<void> {
  const opts = validate.options('options', options, ['gzip', 'level']);
  const gzip = opts.gzip === undefined ? true : validate.boolean('options.gzip', opts.gzip);
  const level = opts.level === undefined ? 9 : validate.integer('options.level', opts.level, 0, 9);
  const raw = encodeIdx(array);
  await writeFile(path, gzip ? gzipSync(raw, { level }) : raw);
}
