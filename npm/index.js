// tally-ec, ESM entry: the same objects as the CommonJS entry (one copy of every class).
import cjs from './lib/index.cjs';

export const { S3db, Database, Resource, EventualConsistencyPlugin, TallyError } = cjs;
export default cjs;
