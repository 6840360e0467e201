#!/usr/bin/env node
'use strict';
require('../lib/app').createApp();
