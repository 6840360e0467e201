'use strict';
// The whole passgate deployment in one stack: DynamoDB table, Lambda with a
// Function URL, secrets, and (identity=cognito) a Cognito user pool that
// passgate signs people in through.
//
// The Function URL, the Cognito app client and the Lambda configuration would
// depend on each other in a cycle. It is broken by a settings secret with a
// fixed name: the function knows only that literal name, and the secret
// (created after the URL and the client) holds the values that need them.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Aws, ArnFormat, CfnOutput, Duration, Fn, RemovalPolicy, SecretValue, Stack, Tags, Token } = require('aws-cdk-lib');
const cognito = require('aws-cdk-lib/aws-cognito');
const dynamodb = require('aws-cdk-lib/aws-dynamodb');
const iam = require('aws-cdk-lib/aws-iam');
const lambda = require('aws-cdk-lib/aws-lambda');
const logs = require('aws-cdk-lib/aws-logs');
const secretsmanager = require('aws-cdk-lib/aws-secretsmanager');
const { RustFunction } = require('cargo-lambda-cdk');
const { parseDomainPrefix, resolveDefaults } = require('./options');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

// How cargo-lambda-cdk builds the function: `cargo lambda build --release
// --arm64 --bin passgate --features lambda,dynamodb` in the repository root.
const RUST_BUILD = {
  manifestPath: path.join(REPO_ROOT, 'Cargo.toml'),
  binaryName: 'passgate',
  runtime: 'provided.al2023',
  bundling: { cargoLambdaFlags: ['--features', 'lambda,dynamodb'] },
};

// Stands in for the binary under skipBuild=true. Deliberately not the
// RustFunction with bundling skipped: that asset is the whole repository,
// which a mistaken `cdk deploy -c skipBuild=true` would then upload.
const PLACEHOLDER_CODE_DIR = path.join(__dirname, '..', 'placeholder');

// What passgate's DynamoDB store calls: item reads and writes and Query; no
// Scan, no batch or table-management calls. TransactWriteItems has no IAM
// action of its own: IAM checks each Put/Update/Delete/ConditionCheck in it.
const TABLE_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:ConditionCheckItem',
  'dynamodb:Query',
];

// Where Lambda mounts a layer's files; the gateway file's layer holds only it.
const GATEWAY_CONFIG_PATH = '/opt/passgate/gateway.toml';

// Longest region name in use (e.g. ap-southeast-2), for the length check of
// the passkey relying-party id while the region is still a token.
const LONGEST_REGION = 14;
const ACCOUNT_ID_LENGTH = 12;

class PassgateStack extends Stack {
  /**
   * @param {import('constructs').Construct} scope
   * @param {string} id
   * @param {import('aws-cdk-lib').StackProps & { options?: object }} props
   *   `options` as returned by optionsFromContext (see lib/options.js).
   */
  constructor(scope, id, props = {}) {
    const { options, ...stackProps } = props;
    const opts = resolveDefaults(options ?? {});
    super(scope, id, {
      description: `passgate: remote MCP server with OAuth sign-in (identity: ${opts.identity})`,
      ...stackProps,
    });
    Tags.of(this).add('app', 'passgate');

    const removalPolicy = opts.removalPolicy === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;

    const table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: 'expires_at',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: opts.deletionProtection,
      removalPolicy,
    });

    // 64 hex digits (32 random bytes). It protects what passgate stores in
    // the table, so it shares the table's removal policy.
    const masterKey = new secretsmanager.Secret(this, 'MasterKey', {
      description: `passgate master key (stack ${this.stackName})`,
      generateSecretString: {
        passwordLength: 64,
        excludeUppercase: true,
        excludePunctuation: true,
        excludeCharacters: 'ghijklmnopqrstuvwxyz',
        includeSpace: false,
        requireEachIncludedType: false,
      },
      removalPolicy,
    });

    // Fixed, so the function can be told the name before the secret exists.
    const settingsSecretName = `${this.stackName}/settings`;
    const settingsSecretArnPattern = this.formatArn({
      service: 'secretsmanager',
      resource: 'secret',
      resourceName: `${settingsSecretName}-??????`, // Secrets Manager appends 6 random characters
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });

    const logGroup = new logs.LogGroup(this, 'Logs', {
      retention: opts.logRetentionDays,
      removalPolicy,
    });

    // An explicit role instead of AWSLambdaBasicExecutionRole, whose log
    // permissions cover every log group in the account.
    const role = new iam.Role(this, 'FunctionRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `passgate function (stack ${this.stackName})`,
    });
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'WriteOwnLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'UseTable',
        actions: TABLE_ACTIONS,
        resources: [table.tableArn],
      }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'ReadSecrets',
        actions: ['secretsmanager:GetSecretValue'],
        resources: [masterKey.secretArn, settingsSecretArnPattern],
      }),
    );

    if (opts.backendFunction) {
      // An AWS_IAM Function URL checks both actions (since October 2025):
      // InvokeFunctionUrl, and InvokeFunction as reached through the URL.
      // Neither lets passgate call the function any other way.
      const { arn } = opts.backendFunction;
      role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'InvokeBackendUrl',
          actions: ['lambda:InvokeFunctionUrl'],
          resources: [arn],
          conditions: { StringEquals: { 'lambda:FunctionUrlAuthType': 'AWS_IAM' } },
        }),
      );
      role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'InvokeBackendViaUrl',
          actions: ['lambda:InvokeFunction'],
          resources: [arn],
          conditions: { Bool: { 'lambda:InvokedViaFunctionUrl': 'true' } },
        }),
      );
    }

    const environment = {
      PASSGATE_STORE: 'dynamodb',
      PASSGATE_DYNAMODB_TABLE: table.tableName,
      PASSGATE_MASTER_KEY_SECRET: masterKey.secretArn,
      PASSGATE_SETTINGS_SECRET: settingsSecretName,
      PASSGATE_LOG: opts.logLevel,
      PASSGATE_LOG_FORMAT: 'json',
    };

    // The user pool comes before the function (its id goes into the
    // environment); the app client comes after the Function URL.
    let idp;
    if (opts.identity === 'cognito') {
      idp = this.createUserPool(opts, removalPolicy);
      Object.assign(environment, {
        PASSGATE_OIDC_PRESET: 'cognito',
        PASSGATE_OIDC_ISSUER: `https://cognito-idp.${Aws.REGION}.${Aws.URL_SUFFIX}/${idp.pool.userPoolId}`,
        PASSGATE_OIDC_DOMAIN: idp.baseUrl,
        PASSGATE_OIDC_SCOPES: 'openid email profile',
        PASSGATE_PASSKEYS: 'false',
      });
    }

    if (opts.backendUrl) environment.PASSGATE_BACKEND = opts.backendUrl;
    if (opts.backendUrl && opts.backendFunction) {
      environment.PASSGATE_BACKEND_SIGV4_SERVICE = 'lambda';
      environment.PASSGATE_BACKEND_SIGV4_REGION = opts.backendFunction.region;
    }
    const layers = [];
    if (opts.gatewayConfig) {
      layers.push(this.gatewayConfigLayer(opts.gatewayConfig));
      environment.PASSGATE_GATEWAY_CONFIG = GATEWAY_CONFIG_PATH;
    }

    const functionProps = {
      architecture: lambda.Architecture.ARM_64,
      description: 'passgate: remote MCP server with its own OAuth authorization server',
      memorySize: 256,
      timeout: Duration.seconds(30),
      role,
      logGroup,
      environment,
      reservedConcurrentExecutions: opts.reservedConcurrency,
      ...(layers.length ? { layers } : {}),
    };
    const fn = opts.skipBuild
      ? new lambda.Function(this, 'Function', {
          ...functionProps,
          runtime: lambda.Runtime.PROVIDED_AL2023,
          handler: 'bootstrap',
          code: lambda.Code.fromAsset(PLACEHOLDER_CODE_DIR),
        })
      : new RustFunction(this, 'Function', { ...functionProps, ...RUST_BUILD });

    // passgate authenticates every request itself (OAuth bearer tokens).
    // RESPONSE_STREAM: a backend's server-sent events reach the client as
    // they come (the binary streams its responses; src/lambda.rs).
    const functionUrl = fn.addFunctionUrl({
      authType: lambda.FunctionUrlAuthType.NONE,
      invokeMode: lambda.InvokeMode.RESPONSE_STREAM,
    });
    // The Function URL ends with "/"; passgate's public URL is an origin.
    const publicUrl = opts.publicUrl ?? `https://${Fn.select(2, Fn.split('/', functionUrl.url))}`;

    const settings = { PASSGATE_PUBLIC_URL: SecretValue.unsafePlainText(publicUrl) };
    if (idp) {
      const client = this.createAppClient(idp, publicUrl);
      settings.PASSGATE_OIDC_CLIENT_ID = SecretValue.unsafePlainText(client.userPoolClientId);
      // The CloudFormation attribute, not client.userPoolClientSecret, which
      // would add a custom resource that calls DescribeUserPoolClient.
      settings.PASSGATE_OIDC_CLIENT_SECRET = SecretValue.resourceAttribute(
        client.node.defaultChild.attrClientSecret,
      );
      idp.client = client;
    }
    new secretsmanager.Secret(this, 'Settings', {
      secretName: settingsSecretName,
      description: `passgate settings derived from stack ${this.stackName}; managed by the stack, do not edit`,
      secretObjectValue: settings,
      // Only derived values, and a fixed name that a retained copy would block.
      removalPolicy: RemovalPolicy.DESTROY,
    });

    this.outputs({ publicUrl, functionUrl, table, masterKey, settingsSecretName, logGroup, idp });
  }

  // The gateway file, alone in a layer (a copy, so the asset is that file
  // and nothing beside it).
  gatewayConfigLayer(file) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'passgate-gateway-'));
    fs.mkdirSync(path.join(dir, 'passgate'));
    fs.copyFileSync(file, path.join(dir, 'passgate', 'gateway.toml'));
    return new lambda.LayerVersion(this, 'GatewayConfig', {
      code: lambda.Code.fromAsset(dir),
      description: 'passgate gateway file (routes to the MCP servers it protects)',
    });
  }

  createUserPool(opts, removalPolicy) {
    const domainPrefix = opts.cognitoDomainPrefix ?? this.defaultDomainPrefix();
    this.checkRelyingPartyIdLength(
      opts.cognitoDomainPrefix ? domainPrefix.length : this.stackName.length + 1 + ACCOUNT_ID_LENGTH,
    );
    const host = `${domainPrefix}.auth.${Aws.REGION}.amazoncognito.com`;

    const pool = new cognito.UserPool(this, 'UserPool', {
      featurePlan: cognito.FeaturePlan.ESSENTIALS,
      selfSignUpEnabled: false,
      signInAliases: { email: true },
      autoVerify: { email: true },
      standardAttributes: { email: { required: true, mutable: true } },
      accountRecovery: cognito.AccountRecovery.EMAIL_ONLY,
      // Cognito requires PASSWORD among the first factors; people set one
      // with the temporary password, then register a passkey.
      signInPolicy: { allowedFirstAuthFactors: { password: true, passkey: true } },
      // Managed login runs the WebAuthn ceremonies on the Cognito domain.
      passkeyRelyingPartyId: host,
      passkeyUserVerification: cognito.PasskeyUserVerification.REQUIRED,
      deletionProtection: opts.deletionProtection,
      removalPolicy,
    });
    pool.addDomain('Domain', {
      cognitoDomain: { domainPrefix },
      managedLoginVersion: cognito.ManagedLoginVersion.NEWER_MANAGED_LOGIN,
    });
    return { pool, domainPrefix, host, baseUrl: `https://${host}` };
  }

  // "<stack name>-<account id>": prefix domains are unique per region across
  // all AWS accounts.
  defaultDomainPrefix() {
    const base = this.stackName.toLowerCase();
    try {
      parseDomainPrefix(base);
    } catch {
      throw new Error(`the stack name ${this.stackName} does not make a valid Cognito domain prefix: set -c cognitoDomainPrefix=...`);
    }
    return `${base}-${Aws.ACCOUNT_ID}`;
  }

  // The relying-party id "<prefix>.auth.<region>.amazoncognito.com" may have
  // at most 63 characters.
  checkRelyingPartyIdLength(prefixLength) {
    const regionLength = Token.isUnresolved(this.region) ? LONGEST_REGION : this.region.length;
    const length = prefixLength + '.auth.'.length + regionLength + '.amazoncognito.com'.length;
    if (length > 63) {
      throw new Error(
        `the passkey relying-party id <prefix>.auth.<region>.amazoncognito.com would exceed 63 characters: set a shorter -c cognitoDomainPrefix=... (or -c stackName=...)`,
      );
    }
  }

  createAppClient(idp, publicUrl) {
    const client = idp.pool.addClient('AppClient', {
      userPoolClientName: 'passgate',
      generateSecret: true,
      authFlows: { user: true },
      oAuth: {
        flows: { authorizationCodeGrant: true },
        scopes: [cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE],
        // The second one is where managed login returns after a person has
        // added a passkey (the AddPasskeyUrl output).
        callbackUrls: [`${publicUrl}/upstream/callback`, `${publicUrl}/`],
        logoutUrls: [`${publicUrl}/`],
      },
      supportedIdentityProviders: [cognito.UserPoolClientIdentityProvider.COGNITO],
      preventUserExistenceErrors: true,
    });
    // Without a branding style on the client, managed login v2 shows
    // "Login pages unavailable".
    new cognito.CfnManagedLoginBranding(this, 'LoginBranding', {
      userPoolId: idp.pool.userPoolId,
      clientId: client.userPoolClientId,
      useCognitoProvidedValues: true,
    });
    return client;
  }

  outputs({ publicUrl, functionUrl, table, masterKey, settingsSecretName, logGroup, idp }) {
    const out = (id, value, description) => new CfnOutput(this, id, { value, description });
    out('McpUrl', `${publicUrl}/mcp`, 'The MCP server URL to add to Claude, ChatGPT, VS Code, Claude Code or Cursor');
    out('PublicUrl', publicUrl, "passgate's public URL (its OAuth issuer)");
    out('FunctionUrl', functionUrl.url, 'The Lambda Function URL');
    out('TableName', table.tableName, 'DynamoDB table holding all of passgate\'s state');
    out('MasterKeySecretArn', masterKey.secretArn, 'Secrets Manager secret with the master key');
    out('SettingsSecretName', settingsSecretName, 'Secrets Manager secret with settings derived from this stack');
    out('LogGroupName', logGroup.logGroupName, "The function's log group");

    const region = Aws.REGION;
    if (!idp) {
      const env = [
        'PASSGATE_STORE=dynamodb',
        `PASSGATE_DYNAMODB_TABLE=${table.tableName}`,
        `PASSGATE_MASTER_KEY_SECRET=${masterKey.secretArn}`,
        `PASSGATE_SETTINGS_SECRET=${settingsSecretName}`,
        `AWS_REGION=${region}`,
      ].join(' ');
      out(
        'FirstAdminLink',
        `curl -s -o /dev/null ${publicUrl}/ ; sleep 5 ; aws logs tail ${logGroup.logGroupName} --region ${region} --since 1h | grep -i enrol`,
        'Shows the first admin\'s enrollment link, which passgate logs when it first starts',
      );
      out('InviteCommand', `${env} passgate users invite alice`, 'Invites a user from your machine (a passgate built with --features dynamodb)');
      return;
    }

    out('UserPoolId', idp.pool.userPoolId, 'Cognito user pool');
    out('CognitoDomain', idp.baseUrl, 'Cognito managed login domain (also the passkey relying-party id)');
    out(
      'CreateUserCommand',
      `aws cognito-idp admin-create-user --region ${region} --user-pool-id ${idp.pool.userPoolId} ` +
        '--username you@example.com --user-attributes Name=email,Value=you@example.com Name=email_verified,Value=true ' +
        '--desired-delivery-mediums EMAIL',
      'Creates a user; Cognito emails a temporary password',
    );
    const query = `client_id=${idp.client.userPoolClientId}&redirect_uri=${publicUrl}/`;
    out(
      'SignInUrl',
      `${idp.baseUrl}/login?${query}&response_type=code&scope=openid+email+profile`,
      'Managed login: sign in with the temporary password and choose a new one',
    );
    out('AddPasskeyUrl', `${idp.baseUrl}/passkeys/add?${query}`, 'Managed login: register a passkey for the signed-in user');
  }
}

module.exports = { PassgateStack, RUST_BUILD, TABLE_ACTIONS, GATEWAY_CONFIG_PATH };
