-- A pump, in the style of an edge micro-server Lua Script Resource template.
-- Runs unchanged under Edgeway: each thing made from this template gets its own sandboxed VM.
module ("templates.pump", thingworx.template.extend)

properties.Temperature = { baseType="NUMBER", pushType="VALUE", pushThreshold=0.5, value=20 }
properties.Running     = { baseType="BOOLEAN", pushType="VALUE", value=false }
properties.Speed       = { baseType="INTEGER", pushType="ALWAYS", value=0 }
properties.Starts      = { baseType="INTEGER", pushType="VALUE", value=0 }
properties.Label       = { baseType="STRING", pushType="NEVER", value="" }

serviceDefinitions.Start(
    output { baseType="BOOLEAN", description="true when the pump runs" },
    input { name="speed", baseType="INTEGER", description="target speed in rpm" },
    description { "Starts the pump at a speed" }
)

services.Start = function(me, headers, query, data)
    if not data.speed or data.speed <= 0 then
        return 400, "speed must be a positive integer"
    end
    properties.Running.value = true
    properties.Speed.value = data.speed
    properties.Starts.value = properties.Starts.value + 1
    log.info(me.name, "started at", data.speed)
    return 200, true
end

serviceDefinitions.Stop(
    output { baseType="BOOLEAN", description="false: the pump is stopped" },
    description { "Stops the pump" }
)

services.Stop = function(me, headers, query, data)
    properties.Running.value = false
    properties.Speed.value = 0
    return 200, false
end

-- Runs at the thing's scan rate: a running pump warms up, a stopped one cools down.
tasks.simulate = function(me)
    local t = properties.Temperature.value
    if properties.Running.value then
        t = t + properties.Speed.value / 1000
    else
        t = t - (t - 20) * 0.1
    end
    properties.Temperature.value = math.floor(t * 100) / 100
end
