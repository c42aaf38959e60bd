// The S3 server of the tests: s3rver on 127.0.0.1, its objects under a folder, with the bucket
// the tests use. s3rver speaks S3's REST API (path-style and virtual-host, XML errors, presigned
// URLs) and checks the access key, though not V4 signatures. scripts/services.sh starts it:
//   node server.js PORT DIRECTORY
'use strict';

const S3rver = require('s3rver');

const [port, directory] = process.argv.slice(2);
if (!port || !directory) {
  console.error('usage: node server.js PORT DIRECTORY');
  process.exit(2);
}
new S3rver({
  address: '127.0.0.1',
  port: Number(port),
  directory,
  silent: true,
  configureBuckets: [{ name: 'imgproc-test' }],
})
  .run()
  .then(() => console.log(`s3rver listening on 127.0.0.1:${port}`))
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });
