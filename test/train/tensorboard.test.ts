// TensorBoard output: CRC32C and its TFRecord masking against the published test vectors, the
// Event/Summary wire format against TensorFlow's field numbers (read with protobufjs's raw Reader,
// not with the writer's schema), event files read back, the projector's files, and a training
// run whose event file carries the same numbers as its metrics.jsonl.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '@aws-crypto/crc32c';
import * as protobuf from 'protobufjs';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SupConError } from '../../src/errors';
import { readMetrics, type EpochRecord, type ResultRecord } from '../../src/train/metrics';
import {
  EVENT_FILE_VERSION,
  EventFileWriter,
  EventProto,
  maskedCrc32c,
  readEventFile,
  readTfRecords,
  TensorBoardSink,
  tfRecordFrame,
  unmaskCrc32c,
  writeProjectorFiles,
} from '../../src/train/tensorboard';
import { trainRun } from '../../src/train/trainer';
import { smallSplits, tinyConfig, tinyEncoder } from './helpers';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'supcon-tb-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('CRC32C (Castagnoli) and TFRecord masking', () => {
  // The test vectors of RFC 3720 (iSCSI) appendix B.4, which TensorFlow's crc32c tests use too.
  it('matches the published vectors', () => {
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
    const iscsiReadPdu = Uint8Array.from([
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ]);
    expect(crc32c(iscsiReadPdu)).toBe(0xd9963a56);
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283); // the CRC catalogue's check value
  });

  it('masks as TFRecord does: ((crc >> 15) | (crc << 17)) + 0xa282ead8, reversibly', () => {
    expect(maskedCrc32c(new Uint8Array(0))).toBe(0xa282ead8); // crc32c('') = 0
    const crc = crc32c(Buffer.from('foo'));
    const masked = maskedCrc32c(Buffer.from('foo'));
    expect(masked).not.toBe(crc);
    expect(unmaskCrc32c(masked)).toBe(crc);
    expect(masked).toBe(((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0);
  });

  it('frames records and detects a damaged one', () => {
    const payloads = [Buffer.from('first'), Buffer.alloc(0), Buffer.from('third record')];
    const file = Buffer.concat(payloads.map((p) => tfRecordFrame(p)));
    expect(file.readBigUInt64LE(0)).toBe(5n);
    expect(file.readUInt32LE(8)).toBe(maskedCrc32c(file.subarray(0, 8)));
    expect(readTfRecords(file).map((r) => Buffer.from(r).toString())).toEqual(['first', '', 'third record']);
    const damaged = Buffer.from(file);
    damaged[14] ^= 1;
    expect(() => readTfRecords(damaged)).toThrow(SupConError);
    expect(() => readTfRecords(damaged)).toThrow(/record 0 .* payload that fails its CRC32C/);
    expect(() => readTfRecords(file.subarray(0, file.length - 2))).toThrow(/truncated/);
  });
});

/** Field numbers and wire types in TensorFlow's event.proto and summary.proto. */
const TF_FIELDS = {
  'Event.wall_time': [1, 1], // double
  'Event.step': [2, 0], // int64 (varint)
  'Event.file_version': [3, 2], // string
  'Event.summary': [5, 2], // Summary
  'Summary.value': [1, 2], // repeated Value
  'Summary.Value.tag': [1, 2], // string
  'Summary.Value.simple_value': [2, 5], // float
  'Summary.Value.node_name': [7, 2], // string
} as const;

/** Raw fields of a message: [field number, wire type, value] with protobufjs's low-level Reader. */
function rawFields(bytes: Uint8Array): Array<[number, number, unknown]> {
  const reader = protobuf.Reader.create(bytes);
  const out: Array<[number, number, unknown]> = [];
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    const value = wire === 0 ? Number(reader.int64()) : wire === 1 ? reader.double() : wire === 5 ? reader.float() : wire === 2 ? reader.bytes() : reader.skipType(wire);
    out.push([field, wire, value]);
  }
  return out;
}

describe("events in TensorFlow's wire format", () => {
  it("the schema uses TensorFlow's field numbers", () => {
    const summary = EventProto.lookupType('tensorboard.Summary');
    const value = summary.lookupType('Value');
    expect(EventProto.fields.wall_time.id).toBe(TF_FIELDS['Event.wall_time'][0]);
    expect(EventProto.fields.step.id).toBe(TF_FIELDS['Event.step'][0]);
    expect(EventProto.fields.file_version.id).toBe(TF_FIELDS['Event.file_version'][0]);
    expect(EventProto.fields.summary.id).toBe(TF_FIELDS['Event.summary'][0]);
    expect(summary.fields.value.id).toBe(TF_FIELDS['Summary.value'][0]);
    expect(value.fields.tag.id).toBe(TF_FIELDS['Summary.Value.tag'][0]);
    expect(value.fields.simple_value.id).toBe(TF_FIELDS['Summary.Value.simple_value'][0]);
    expect(value.fields.node_name.id).toBe(TF_FIELDS['Summary.Value.node_name'][0]);
  });

  it('writes a file_version event, then scalar events, each field where TensorFlow reads it', async () => {
    const writer = new EventFileWriter(join(root, 'raw'));
    await writer.addScalars(7, { 'train/loss': 0.25, 'train/nan': NaN }, 1234.5);
    const records = readTfRecords(readFileSync(writer.path));
    expect(records).toHaveLength(2);
    const first = rawFields(records[0]);
    expect(first.find(([f]) => f === 3)).toEqual([3, 2, expect.anything()]);
    expect(Buffer.from(first.find(([f]) => f === 3)![2] as Uint8Array).toString()).toBe(EVENT_FILE_VERSION);
    expect(first.find(([f]) => f === 1)![1]).toBe(TF_FIELDS['Event.wall_time'][1]);

    const event = rawFields(records[1]);
    expect(event).toContainEqual([1, TF_FIELDS['Event.wall_time'][1], 1234.5]);
    expect(event).toContainEqual([2, TF_FIELDS['Event.step'][1], 7]);
    const summary = event.find(([f]) => f === TF_FIELDS['Event.summary'][0])!;
    expect(summary[1]).toBe(2);
    const values = rawFields(summary[2] as Uint8Array);
    expect(values).toHaveLength(1); // the NaN was left out
    expect(values[0].slice(0, 2)).toEqual(TF_FIELDS['Summary.value']);
    const value = rawFields(values[0][2] as Uint8Array);
    expect(Buffer.from(value.find(([f]) => f === 1)![2] as Uint8Array).toString()).toBe('train/loss');
    expect(value).toContainEqual([2, TF_FIELDS['Summary.Value.simple_value'][1], 0.25]);
    expect(writer.path).toMatch(/\/events\.out\.tfevents\.\d+\.[^/]+$/);
  });

  it('turns metrics records into scalars at the run step and reads them back', async () => {
    const dir = join(root, 'sink');
    const sink = new TensorBoardSink(dir, 0);
    const epoch: EpochRecord = { type: 'epoch', epoch: 1, epochs: 1, step: 12, loss: 3.5, lr: 0.05, knnAccuracy: 0.4, imagesPerSecond: 321, seconds: 2, time: '2026-01-01T00:00:00.000Z' };
    const result: ResultRecord = { type: 'result', method: 'supcon', evaluation: 'linear', testAccuracy: 0.625, trainAccuracy: 0.75, testCount: 8, epochs: 1, time: '2026-01-01T00:01:00.000Z' };
    await sink.record(epoch);
    await sink.record(result);
    const [file] = readdirSync(dir);
    const events = await readEventFile(join(dir, file));
    expect(events[0].fileVersion).toBe('brain.Event:2');
    expect(events[1]).toEqual({
      wallTime: Date.parse(epoch.time) / 1000,
      step: 12,
      scalars: { 'train/loss': 3.5, 'train/learning_rate': expect.closeTo(0.05, 7), 'train/images_per_second': 321, 'train/epoch': 1, 'monitor/knn_accuracy': expect.closeTo(0.4, 7) },
    });
    expect(events[2]).toMatchObject({ step: 12, scalars: { 'eval/linear_test_accuracy': 0.625, 'eval/linear_train_accuracy': 0.75 } });
  });

  it('writes the projector files', async () => {
    const dir = join(root, 'projector');
    await writeProjectorFiles(dir, Float32Array.from([1, 0.5, -2, 3]), 2, { columns: ['class', 'path'], rows: [['cat', '/a\tb.png'], ['dog', '/c.png']] });
    expect(readFileSync(join(dir, 'tensors.tsv'), 'utf8')).toBe('1.00000\t0.500000\n-2.00000\t3.00000\n');
    expect(readFileSync(join(dir, 'metadata.tsv'), 'utf8')).toBe('class\tpath\ncat\t/a b.png\ndog\t/c.png\n');
    expect(readFileSync(join(dir, 'projector_config.pbtxt'), 'utf8')).toBe(
      'embeddings {\n  tensor_name: "embeddings"\n  tensor_path: "tensors.tsv"\n  metadata_path: "metadata.tsv"\n}\n',
    );
    await writeProjectorFiles(dir, Float32Array.from([1, 2]), 1, { columns: ['class'], rows: [['a'], ['b']] });
    expect(readFileSync(join(dir, 'metadata.tsv'), 'utf8')).toBe('a\nb\n'); // one column: no header
    await expect(writeProjectorFiles(dir, new Float32Array(3), 2, { columns: ['c'], rows: [['a'], ['b']] })).rejects.toThrow(/vectors/);
  });

  it('rejects a file that is not TFRecord', async () => {
    const bad = join(root, 'events.out.tfevents.bad');
    writeFileSync(bad, 'nonsense, not a record file');
    await expect(readEventFile(bad)).rejects.toThrow(SupConError);
  });
});

describe('a training run writes TensorBoard files', () => {
  it('with the numbers of metrics.jsonl and the test set in the projector', async () => {
    await tf.setBackend('cpu');
    const data = await smallSplits(64, 24);
    const outDir = join(root, 'run');
    await trainRun(tinyConfig({ epochs: 2, knnBank: 32, knnQueries: 16, linearEpochs: 2 }), { outDir, datasets: data, buildEncoder: tinyEncoder, fastKernels: false });
    const records = await readMetrics(join(outDir, 'metrics.jsonl'));
    const files = readdirSync(join(outDir, 'tensorboard')).sort();
    expect(files.filter((f) => f.startsWith('events.out.tfevents.'))).toHaveLength(1);
    expect(files).toEqual(expect.arrayContaining(['metadata.tsv', 'projector_config.pbtxt', 'tensors.tsv']));
    const events = await readEventFile(join(outDir, 'tensorboard', files.find((f) => f.startsWith('events'))!));
    expect(events).toHaveLength(1 + records.length);
    records.forEach((r, i) => {
      const e = events[i + 1];
      if (r.type === 'epoch') {
        expect(e.step).toBe(r.step);
        expect(e.scalars!['train/loss']).toBeCloseTo(r.loss, 5);
        expect(e.scalars!['monitor/knn_accuracy']).toBeCloseTo(r.knnAccuracy!, 6);
      } else {
        expect(e.scalars!['eval/linear_test_accuracy']).toBeCloseTo(r.testAccuracy, 6);
      }
    });
    const tensors = readFileSync(join(outDir, 'tensorboard', 'tensors.tsv'), 'utf8').trim().split('\n');
    expect(tensors).toHaveLength(24);
    expect(tensors[0].split('\t')).toHaveLength(16); // the tiny encoder's features
    const meta = readFileSync(join(outDir, 'tensorboard', 'metadata.tsv'), 'utf8').trim().split('\n');
    expect(meta[0]).toBe(data.test.classNames[data.test.labels[0]]);
    expect(JSON.parse(readFileSync(join(outDir, 'dataset.json'), 'utf8'))).toMatchObject({ name: 'fashion-mnist-mini', height: 28, channels: 1, numClasses: 10 });
  });
});
