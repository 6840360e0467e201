'use strict';
const { App } = require('aws-cdk-lib');
const { optionsFromContext } = require('./options');
const { PassgateStack } = require('./passgate-stack');

/** The CDK app: exactly one stack, configured by context (see README.md). */
function createApp(appProps = {}) {
  const app = new App(appProps);
  const options = optionsFromContext(app.node);
  new PassgateStack(app, options.stackName, { options });
  return app;
}

module.exports = { createApp };
