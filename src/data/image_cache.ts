/**
 * The decoded-pixel cache of an image folder: one file holding every image of the folder as
 * `imageSize * imageSize * channels` uint8 bytes, so that later epochs and later runs read
 * pixels instead of decoding files. Layout:
 *
 *     bytes 0-7     magic 'SUPCONIC'
 *     bytes 8-15    uint64 LE offset of the JSON index (after the records)
 *     bytes 64-     record i at 64 + i * recordBytes (zeros for an unreadable file)
 *     index         JSON: decoder settings and, per record, { path, size, mtimeMs, ok, reason? }
 *
 * A record is reused while its file keeps the same path, size and modification time; files
 * that are new or changed are decoded and the cache is rewritten (to a temporary name, then
 * renamed over the old one, so readers never see half a cache).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { InvalidArgumentError } from '../errors';
import * as validate from '../validate';
import type { ImageStore } from './datasets';
import { DatasetError } from './errors';
import { decodeImageFiles, type DecodeOptions, type DecodeProgress } from './images';

const MAGIC = Buffer.from('SUPCONIC', 'ascii');
const DATA_OFFSET = 64;
/** Bumped whenever decoding changes, so older caches are rebuilt. */
const DECODER_VERSION = 1;
const FORMAT = 'supcon-image-cache';

/** One file of the folder as the cache keys it. */
export interface CacheSourceFile {
  /** Path relative to the folder's root, '/' separators: the key. */
  relativePath: string;
  /** Absolute path, to decode it. */
  path: string;
  size: number;
  mtimeMs: number;
}

/** A record of the cache. */
export interface CacheEntry {
  path: string;
  size: number;
  mtimeMs: number;
  /** False when the file could not be decoded (its record is zeros). */
  ok: boolean;
  /** Why it could not be decoded. */
  reason?: string;
}

interface CacheIndex {
  format: typeof FORMAT;
  decoderVersion: number;
  imageSize: number;
  channels: number;
  recordBytes: number;
  entries: CacheEntry[];
}

/** A cache file, open for reading, that holds every file it was synced with. */
export interface SyncedCache {
  /** The cache file. */
  file: string;
  /** Open descriptor of exactly the file whose index is `entries` (stays valid if the file is replaced). */
  fd: number;
  recordBytes: number;
  /** Record number of every file, by relative path. */
  slots: Map<string, { slot: number; entry: CacheEntry }>;
  /** Files decoded by this sync (0 when the cache was up to date). */
  decoded: number;
}

function readIndex(fd: number): CacheIndex | null {
  const head = Buffer.alloc(16);
  if (readSync(fd, head, 0, 16, 0) < 16 || !head.subarray(0, 8).equals(MAGIC)) return null;
  const indexOffset = Number(head.readBigUInt64LE(8));
  const { size } = fstatSync(fd);
  if (indexOffset < DATA_OFFSET || indexOffset >= size) return null;
  const text = Buffer.alloc(size - indexOffset);
  if (readSync(fd, text, 0, text.length, indexOffset) !== text.length) return null;
  try {
    const index = JSON.parse(text.toString('utf8')) as CacheIndex;
    if (index.format !== FORMAT || !Array.isArray(index.entries)) return null;
    if (indexOffset !== DATA_OFFSET + index.entries.length * index.recordBytes) return null;
    return index;
  } catch {
    return null; // a damaged cache is rebuilt, not an error
  }
}

/**
 * Brings the cache file up to date with `files` (decoding what is new or changed, with
 * progress) and returns it open for reading.
 * @throws {@link DatasetError} when the cache cannot be written.
 */
export async function syncImageCache(
  cacheFile: string,
  files: readonly CacheSourceFile[],
  decode: DecodeOptions,
  onProgress?: (progress: DecodeProgress) => void,
  source = '',
): Promise<SyncedCache> {
  const recordBytes = decode.imageSize * decode.imageSize * decode.channels;
  let old: number | undefined;
  let oldIndex: CacheIndex | null = null;
  try {
    old = openSync(cacheFile, 'r');
    oldIndex = readIndex(old);
    if (
      oldIndex !== null &&
      (oldIndex.decoderVersion !== DECODER_VERSION ||
        oldIndex.imageSize !== decode.imageSize ||
        oldIndex.channels !== decode.channels ||
        oldIndex.recordBytes !== recordBytes)
    ) {
      oldIndex = null;
    }
  } catch {
    // no cache yet
  }
  const oldSlots = new Map<string, number>();
  oldIndex?.entries.forEach((e, i) => oldSlots.set(e.path, i));
  const reusable = (f: CacheSourceFile): number | undefined => {
    const slot = oldSlots.get(f.relativePath);
    if (slot === undefined) return undefined;
    const e = oldIndex!.entries[slot];
    return e.size === f.size && e.mtimeMs === f.mtimeMs ? slot : undefined;
  };
  const stale = files.filter((f) => reusable(f) === undefined);

  if (old !== undefined && oldIndex !== null && stale.length === 0) {
    // Up to date (removed files are simply not asked for): keep the file as it is.
    const slots = new Map<string, { slot: number; entry: CacheEntry }>();
    for (const f of files) {
      const slot = reusable(f)!;
      slots.set(f.relativePath, { slot, entry: oldIndex.entries[slot] });
    }
    return { file: cacheFile, fd: old, recordBytes, slots, decoded: 0 };
  }

  const tmp = `${cacheFile}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  let out: FileHandle;
  try {
    await mkdir(dirname(cacheFile), { recursive: true });
    out = await open(tmp, 'w+');
  } catch (e) {
    if (old !== undefined) closeSync(old);
    throw new DatasetError(cacheFile, `cannot write the image cache (${(e as Error).message})`, 'Fix: pass a writable cacheDir');
  }
  try {
    const header = Buffer.alloc(DATA_OFFSET);
    MAGIC.copy(header, 0);
    await out.write(header, 0, DATA_OFFSET, 0);
    const entries: CacheEntry[] = files.map((f) => ({ path: f.relativePath, size: f.size, mtimeMs: f.mtimeMs, ok: true }));
    // Records kept from the old cache, copied in file order.
    const buffer = Buffer.alloc(recordBytes);
    for (let i = 0; i < files.length; i++) {
      const slot = reusable(files[i]);
      if (slot === undefined) continue;
      readCacheRecords(old!, cacheFile, recordBytes, [slot], buffer);
      await out.write(buffer, 0, recordBytes, DATA_OFFSET + i * recordBytes);
      const before = oldIndex!.entries[slot];
      entries[i].ok = before.ok;
      if (before.reason !== undefined) entries[i].reason = before.reason;
    }
    const staleSlots = files.map((f, i) => (reusable(f) === undefined ? i : -1)).filter((i) => i >= 0);
    await decodeImageFiles(
      staleSlots.map((i) => files[i].path),
      { ...decode, source, ...(onProgress ? { onProgress } : {}) },
      async (k, outcome) => {
        const i = staleSlots[k];
        if (outcome.ok) await out.write(outcome.pixels, 0, recordBytes, DATA_OFFSET + i * recordBytes);
        else {
          entries[i].ok = false;
          entries[i].reason = outcome.reason;
        }
      },
    );
    const indexOffset = DATA_OFFSET + files.length * recordBytes;
    const index: CacheIndex = { format: FORMAT, decoderVersion: DECODER_VERSION, imageSize: decode.imageSize, channels: decode.channels, recordBytes, entries };
    const text = Buffer.from(JSON.stringify(index), 'utf8');
    await out.write(text, 0, text.length, indexOffset);
    await out.truncate(indexOffset + text.length);
    const offset = Buffer.alloc(8);
    offset.writeBigUInt64LE(BigInt(indexOffset));
    await out.write(offset, 0, 8, 8);
    await out.sync();
    const fd = openSync(tmp, 'r');
    await out.close();
    await rename(tmp, cacheFile);
    const slots = new Map<string, { slot: number; entry: CacheEntry }>();
    files.forEach((f, i) => slots.set(f.relativePath, { slot: i, entry: entries[i] }));
    return { file: cacheFile, fd, recordBytes, slots, decoded: staleSlots.length };
  } catch (e) {
    await out.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e instanceof DatasetError
      ? e
      : new DatasetError(cacheFile, `cannot write the image cache (${(e as Error).message})`, 'Fix: pass a writable cacheDir');
  } finally {
    if (old !== undefined) closeSync(old);
  }
}

/**
 * Reads records `slots` of an open cache into `out`, in that order; runs of consecutive
 * records are read in one call.
 */
export function readCacheRecords(fd: number, file: string, recordBytes: number, slots: ArrayLike<number>, out: Uint8Array): void {
  let i = 0;
  while (i < slots.length) {
    let j = i + 1;
    while (j < slots.length && slots[j] === slots[j - 1] + 1) j++;
    const length = (j - i) * recordBytes;
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        n = readSync(fd, out, i * recordBytes + done, length - done, DATA_OFFSET + slots[i] * recordBytes + done);
      } catch (e) {
        throw new DatasetError(file, `cannot read the image cache (${(e as Error).message})`, 'Fix: delete the cache file to rebuild it');
      }
      if (n === 0) throw new DatasetError(file, 'the image cache is truncated', 'Fix: delete the cache file to rebuild it');
      done += n;
    }
    i = j;
  }
}

/** An open cache file shared by a store and its subsets; closed when none is reachable. */
class CacheHandle {
  constructor(
    readonly fd: number,
    readonly file: string,
  ) {}
}

const closer = new FinalizationRegistry<number>((fd) => {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
});

/** An {@link ImageStore} over records of a cache file. */
export class CacheFileStore implements ImageStore {
  readonly count: number;

  private constructor(
    private readonly handle: CacheHandle,
    readonly recordBytes: number,
    private readonly slots: Int32Array,
  ) {
    this.count = slots.length;
  }

  /** A store over `slots` of the open cache `fd`, which it now owns (closed once unreachable). */
  static open(fd: number, file: string, recordBytes: number, slots: Int32Array): CacheFileStore {
    const handle = new CacheHandle(fd, file);
    closer.register(handle, fd);
    return new CacheFileStore(handle, recordBytes, slots);
  }

  read(indices: ArrayLike<number>, out: Uint8Array): void {
    if (out.length !== indices.length * this.recordBytes) {
      throw new InvalidArgumentError('out', `Uint8Array of length ${indices.length * this.recordBytes}`, `length ${out.length}`);
    }
    const slots = new Int32Array(indices.length);
    for (let i = 0; i < indices.length; i++) {
      const r = indices[i];
      if (!Number.isInteger(r) || r < 0 || r >= this.count) validate.fail(`indices[${i}]`, `integer in [0, ${this.count - 1}]`, r);
      slots[i] = this.slots[r];
    }
    readCacheRecords(this.handle.fd, this.handle.file, this.recordBytes, slots, out);
  }

  subset(indices: ArrayLike<number>): ImageStore {
    const slots = new Int32Array(indices.length);
    for (let i = 0; i < indices.length; i++) {
      const r = validate.integer(`indices[${i}]`, indices[i], 0, this.count - 1);
      slots[i] = this.slots[r];
    }
    return new CacheFileStore(this.handle, this.recordBytes, slots);
  }
}
