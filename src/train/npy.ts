/**
 * NumPy's `.npy` format (version 1.0) for float32 matrices: what `numpy.save` writes and
 * `numpy.load` reads. A file is the magic `\x93NUMPY`, the version bytes 1 0, a uint16 LE
 * header length, an ASCII Python dict `{'descr': '<f4', 'fortran_order': False, 'shape': (R, C), }`
 * padded with spaces and a newline so the data starts at a multiple of 64 bytes, then the
 * little-endian float32 values in C (row-major) order.
 */
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

/** The bytes of a `.npy` file holding `data` with `shape` (C order, float32). */
export function encodeNpy(data: Float32Array, shape: readonly number[]): Buffer {
  validate.typedArray('data', data, Float32Array);
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) validate.fail('shape', 'an array of non-negative integers', shape);
  const size = shape.reduce((a, b) => a * b, 1);
  if (size !== data.length) throw new InvalidArgumentError('shape', `a shape of ${data.length} elements (the data's)`, `[${shape.join(', ')}]`);
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  const unpadded = MAGIC.length + 2 + 2 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const out = Buffer.alloc(MAGIC.length + 4 + header.length + data.length * 4);
  MAGIC.copy(out, 0);
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, 'latin1');
  const offset = 10 + header.length;
  for (let i = 0; i < data.length; i++) out.writeFloatLE(data[i], offset + 4 * i);
  return out;
}

/**
 * Reads a float32 `.npy` file (version 1.0-3.0, little-endian, C order).
 * @throws {@link InvalidArgumentError} naming `what` when the bytes are not such a file.
 */
export function decodeNpy(bytes: Uint8Array, what = 'data'): { data: Float32Array; shape: number[] } {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (problem: string): never => {
    throw new InvalidArgumentError(what, 'a float32 .npy file (numpy.save of a C-order float32 array)', problem);
  };
  if (buffer.length < 10 || !buffer.subarray(0, 6).equals(MAGIC)) bad('bytes without the \\x93NUMPY magic');
  const major = buffer[6];
  const headerLength = major === 1 ? buffer.readUInt16LE(8) : major <= 3 ? buffer.readUInt32LE(8) : bad(`version ${major}`);
  const start = major === 1 ? 10 : 12;
  const header = buffer.subarray(start, start + headerLength).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  if (descr !== '<f4' && descr !== '|f4') bad(`dtype '${descr ?? '?'}'`);
  if (!/'fortran_order':\s*False/.test(header)) bad('a Fortran-order array');
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (shapeText === undefined) bad('a header without a shape');
  const shape = shapeText!.split(',').map((t) => t.trim()).filter((t) => t !== '').map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) bad(`shape (${shapeText})`);
  const size = shape.reduce((a, b) => a * b, 1);
  const offset = start + headerLength;
  if (buffer.length - offset !== size * 4) bad(`${buffer.length - offset} data bytes for shape (${shapeText}), which needs ${size * 4}`);
  const data = new Float32Array(size);
  for (let i = 0; i < size; i++) data[i] = buffer.readFloatLE(offset + 4 * i);
  return { data, shape };
}
